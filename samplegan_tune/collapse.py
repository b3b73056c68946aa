"""Collapse detectors, each with a named reason, fed from training steps and from rollouts.

Training signals (`CollapseMonitor.check_training`, given each `Trainer.step()` dict):
    non_finite           a NaN/inf loss or metric (or weight, when a model is given).
    exploding_gradients  a gradient norm ("grad/*") above `grad_norm_max`, or not finite, for
                         `grad_patience` consecutive checks.
    d_overpowered        D's accuracy on real and on fake segments (its sign statistic) both
                         ≥ `d_accuracy` for `d_patience` consecutive checks.
Rollouts (`check_rollouts`, generated clips (B, T) against a `RealReference`):
    silence              the median clip level is `silence_margin_db` below the real mean.
    static               median spectral flatness at noise level relative to the real audio:
                         ≥ max(real + `static_margin`, min(`static_ratio` · real, `static_cap`)).
    stagnant             in ≥ `stagnant_share` of the clips the second half is stuck: its level
                         or its sample-to-sample activity has fallen `stagnant_level_db` /
                         `stagnant_activity_db` below the quietest real clips' (their
                         `real_quantile`), or its spectrum has stopped changing (log-mel flux
                         below `stagnant_flux_ratio` × that of the real clips' quantile).
    mode_collapse        diversity ratio (see metrics) below `diversity_min`.
Checks run in the order above; the first that fires is the reason. The defaults are calibrated
in docs/metrics_calibration.md (benchmarks/calibrate_metrics.py): none fires on real music.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samplegan_tune.audio import rms_dbfs
from samplegan_tune.features import (
    checked_clips,
    embed_clips,
    mean_pairwise_distance,
    median_flatness,
    tail_statistics,
)
from samplegan_tune.metrics import RealReference

NON_FINITE = "non_finite"
EXPLODING_GRADIENTS = "exploding_gradients"
D_OVERPOWERED = "d_overpowered"
SILENCE = "silence"
STATIC = "static"
STAGNANT = "stagnant"
MODE_COLLAPSE = "mode_collapse"
TRAINING_REASONS = (NON_FINITE, EXPLODING_GRADIENTS, D_OVERPOWERED)
ROLLOUT_REASONS = (SILENCE, STATIC, STAGNANT, MODE_COLLAPSE)
REASON_METRIC = "collapse/reason"
"""The metric name under which a collapse reason is reported."""


@dataclass(frozen=True)
class CollapseConfig:
    """Every detector threshold; see the module docstring for what each one does."""

    d_accuracy: float = 0.99  # D's real and fake accuracy both at least this ...
    d_patience: int = 5  # ... for this many consecutive checks
    grad_norm_max: float = 1e5  # pre-clipping norms: healthy runs stay below ~1e3
    grad_patience: int = 2
    silence_margin_db: float = 40.0
    static_margin: float = 0.1  # flatness above the real median by at least this ...
    static_ratio: float = 3.0  # ... and at least this many times it,
    static_cap: float = 0.5  # except that white-noise level (≈ 0.56) is always enough
    stagnant_level_db: float = 25.0
    stagnant_activity_db: float = 30.0
    stagnant_flux_ratio: float = 0.3
    stagnant_share: float = 0.5
    real_quantile: float = 0.1  # "the quietest real clips": this quantile of the real tails
    diversity_min: float = 0.2

    def __post_init__(self) -> None:
        if min(self.d_patience, self.grad_patience) < 1:
            raise ValueError("CollapseConfig: patience values must be ≥ 1")
        if not (0.0 < self.stagnant_share <= 1.0 and 0.0 <= self.real_quantile <= 1.0):
            raise ValueError("CollapseConfig: stagnant_share and real_quantile must be in (0, 1]")


class CollapseMonitor:
    """Stateful detectors for one trial: consecutive-check counters live here."""

    def __init__(self, config: CollapseConfig | None = None) -> None:
        self.config = config or CollapseConfig()
        self._d_run = 0
        self._grad_run = 0

    def check_training(
        self, metrics: dict[str, float], model: torch.nn.Module | None = None
    ) -> str | None:
        """The collapse reason shown by one `Trainer.step()` metrics dict, or None.

        Args:
            metrics: namespaced floats such as "loss/d", "grad/g_norm", "d/acc_real".
            model: if given, its parameters are scanned for NaN/inf too.
        """
        cfg = self.config
        grads = {k: v for k, v in metrics.items() if k.startswith("grad/")}
        others = [v for k, v in metrics.items() if k not in grads]
        if not all(math.isfinite(v) for v in others):
            return NON_FINITE
        if model is not None and not weights_finite(model):
            return NON_FINITE
        if grads:
            high = any(not (v <= cfg.grad_norm_max) for v in grads.values())  # NaN counts
            self._grad_run = self._grad_run + 1 if high else 0
            if self._grad_run >= cfg.grad_patience:
                return EXPLODING_GRADIENTS
        if "d/acc_real" in metrics and "d/acc_fake" in metrics:
            won = min(metrics["d/acc_real"], metrics["d/acc_fake"]) >= cfg.d_accuracy
            self._d_run = self._d_run + 1 if won else 0
            if self._d_run >= cfg.d_patience:
                return D_OVERPOWERED
        return None

    def state_dict(self) -> dict[str, int]:
        """The consecutive-check counters, so a resumed trial keeps counting."""
        return {"d_run": self._d_run, "grad_run": self._grad_run}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._d_run, self._grad_run = int(state["d_run"]), int(state["grad_run"])

    def check_rollouts(self, generated: torch.Tensor, reference: RealReference) -> str | None:
        """The first collapse reason shown by `generated` (B, T) clips, or None."""
        fired = rollout_reasons(generated, reference, self.config)
        return fired[0] if fired else None


def weights_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter of `model` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def rollout_reasons(
    generated: torch.Tensor, reference: RealReference, config: CollapseConfig | None = None
) -> list[str]:
    """Every rollout detector that fires on `generated` (B, T), in `ROLLOUT_REASONS` order."""
    cfg = config or CollapseConfig()
    clips = checked_clips(generated, reference.sample_rate, "generated clips")
    fired = []
    if float(rms_dbfs(clips).median()) < reference.loudness_dbfs - cfg.silence_margin_db:
        fired.append(SILENCE)
    real_flat = reference.flatness
    limit = max(real_flat + cfg.static_margin, min(cfg.static_ratio * real_flat, cfg.static_cap))
    if median_flatness(clips, reference.sample_rate) >= limit:
        fired.append(STATIC)
    if stagnant_share(clips, reference, cfg) >= cfg.stagnant_share:
        fired.append(STAGNANT)
    if len(clips) >= 2 and reference.pairwise_distance:
        _, emb = embed_clips(reference.embedding, clips)
        spread = mean_pairwise_distance((emb.double() - reference.clip_mean) / reference.clip_scale)
        if spread / reference.pairwise_distance < cfg.diversity_min:
            fired.append(MODE_COLLAPSE)
    return fired


def stagnant_share(
    clips: torch.Tensor, reference: RealReference, config: CollapseConfig | None = None
) -> float:
    """Share of `clips` (B, T) whose second half is stuck (see the module docstring)."""
    cfg = config or CollapseConfig()
    tail = tail_statistics(clips, reference.sample_rate)
    real = {
        k: float(torch.quantile(v.double(), cfg.real_quantile)) for k, v in reference.tail.items()
    }
    stuck = (
        (tail["level_db"] < real["level_db"] - cfg.stagnant_level_db)
        | (tail["activity_db"] < real["activity_db"] - cfg.stagnant_activity_db)
        | (tail["flux"] < real["flux"] * cfg.stagnant_flux_ratio)
    )
    return float(stuck.double().mean())
