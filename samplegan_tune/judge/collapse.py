"""Collapse detectors, each with a named reason, fed from training steps and from rollouts.

Training signals (`CollapseMonitor.check_training`, given each `Trainer.step()` dict):
    non_finite           a NaN/inf loss or metric (or weight, when a model is given).
    exploding_gradients  a gradient norm ("grad/*") above `grad_norm_max`, or not finite, for
                         `grad_patience` consecutive checks.
    d_overpowered        D's separation ("d/separation", `losses.d_separation`: the share of
                         (real, fake) segment pairs whose real segment gets the higher mean
                         logit; 0.5 = balanced, 1 = every real above every fake)
                         ≥ `d_separation` for `d_patience` consecutive checks. It means the
                         same for every adversarial loss, unlike a logit's sign (lsgan's
                         boundary is 0.5; a wgan-gp critic has none).
Rollouts (`check_rollouts`, generated clips (B, T) against a `RealReference`):
    silence              the median clip level is `silence_margin_db` below the real mean.
    static               median spectral flatness at noise level relative to the real audio:
                         ≥ max(real + `static_margin`, min(`static_ratio` · real, `static_cap`)).
    stagnant             in ≥ `stagnant_share` of the clips the second half is stuck: its level
                         or its sample-to-sample activity has fallen `stagnant_level_db` /
                         `stagnant_activity_db` below the quietest real clips' (their
                         `real_quantile`), or its spectrum has stopped changing (log-mel flux
                         below `stagnant_flux_ratio` × that of the real clips' quantile).
    looping              in ≥ `looping_share` of the clips the output repeats or is frozen: its
                         repetition (see metrics; 0 = an exact loop of any period) below
                         `looping_ratio` × the real clips' quantile, or its spectral change
                         below `frozen_ratio` × theirs.
    mode_collapse        diversity ratio (see metrics) below `diversity_min`.
    noise_ignored        noise spread (see metrics: the same primer with other noise seeds)
                         below `noise_spread_min`; judged only when such rollouts were made.
Checks run in the order above; the first that fires is the reason. The defaults are calibrated
in docs/metrics_calibration.md (benchmarks/calibrate_metrics.py): none fires on real music.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.judge.features import (
    checked_clips,
    embed_clips,
    mean_pairwise_distance,
    median_flatness,
    tail_statistics,
)
from samplegan_tune.judge.metrics import RealReference
from samplegan_tune.judge.timefeatures import repetition, spectral_change, time_frames

NON_FINITE = "non_finite"
EXPLODING_GRADIENTS = "exploding_gradients"
D_OVERPOWERED = "d_overpowered"
SILENCE = "silence"
STATIC = "static"
STAGNANT = "stagnant"
LOOPING = "looping"
MODE_COLLAPSE = "mode_collapse"
NOISE_IGNORED = "noise_ignored"
TRAINING_REASONS = (NON_FINITE, EXPLODING_GRADIENTS, D_OVERPOWERED)
ROLLOUT_REASONS = (SILENCE, STATIC, STAGNANT, LOOPING, MODE_COLLAPSE, NOISE_IGNORED)
SEPARATION_METRIC = "d/separation"
"""The training metric `d_overpowered` reads (`losses.d_separation`)."""
REASON_METRIC = "collapse/reason"
"""The metric name under which a collapse reason is reported."""


@dataclass(frozen=True)
class CollapseConfig:
    """Every detector threshold; see the module docstring for what each one does."""

    d_separation: float = 0.99  # D ranks at least this share of (real, fake) pairs right ...
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
    looping_ratio: float = 0.25  # repetition below this × the real clips' quantile ...
    frozen_ratio: float = 0.25  # ... or spectral change below this × theirs ...
    looping_share: float = 0.5  # ... in at least this share of the clips
    diversity_min: float = 0.2
    noise_spread_min: float = 0.1

    def __post_init__(self) -> None:
        if min(self.d_patience, self.grad_patience) < 1:
            raise ValueError("CollapseConfig: patience values must be ≥ 1")
        shares = (self.stagnant_share, self.looping_share)
        if not (min(shares) > 0.0 and max(shares) <= 1.0 and 0.0 <= self.real_quantile <= 1.0):
            raise ValueError(
                "CollapseConfig: stagnant_share, looping_share and real_quantile must be in (0, 1]"
            )


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
            metrics: namespaced floats such as "loss/d", "grad/g_norm", "d/separation".
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
        if SEPARATION_METRIC in metrics:
            won = metrics[SEPARATION_METRIC] >= cfg.d_separation
            self._d_run = self._d_run + 1 if won else 0
            if self._d_run >= cfg.d_patience:
                return D_OVERPOWERED
        return None

    def state_dict(self) -> dict[str, int]:
        """The consecutive-check counters, so a resumed trial keeps counting."""
        return {"d_run": self._d_run, "grad_run": self._grad_run}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Take back the counters `state_dict` saved."""
        self._d_run, self._grad_run = int(state["d_run"]), int(state["grad_run"])

    def check_rollouts(
        self,
        generated: torch.Tensor,
        reference: RealReference,
        noise_spread: float | None = None,
    ) -> list[str]:
        """Every collapse reason shown by `generated` (B, T) clips (`rollout_reasons`); give
        the `quality/noise_spread` of the same rollouts, when measured, to judge
        `noise_ignored`."""
        return rollout_reasons(generated, reference, self.config, noise_spread)


def weights_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter of `model` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def rollout_reasons(
    generated: torch.Tensor,
    reference: RealReference,
    config: CollapseConfig | None = None,
    noise_spread: float | None = None,
) -> list[str]:
    """Every rollout detector that fires on `generated` (B, T), in `ROLLOUT_REASONS` order;
    `noise_ignored` only when `noise_spread` (`quality/noise_spread`) is given."""
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
    if looping_share(clips, reference, cfg) >= cfg.looping_share:
        fired.append(LOOPING)
    if len(clips) >= 2 and reference.pairwise_distance:
        _, emb = embed_clips(reference.embedding, clips)
        spread = mean_pairwise_distance((emb.double() - reference.clip_mean) / reference.clip_scale)
        if spread / reference.pairwise_distance < cfg.diversity_min:
            fired.append(MODE_COLLAPSE)
    if noise_spread is not None and noise_spread < cfg.noise_spread_min:
        fired.append(NOISE_IGNORED)
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


def looping_share(
    clips: torch.Tensor, reference: RealReference, config: CollapseConfig | None = None
) -> float:
    """Share of checked `clips` (B, T) that repeat or are frozen (see the module docstring)."""
    cfg = config or CollapseConfig()
    frames = time_frames(clips, reference.sample_rate)  # (B, F, 64)
    real_rep = float(torch.quantile(reference.repetition.double(), cfg.real_quantile))
    real_change = float(torch.quantile(reference.change.double(), cfg.real_quantile))
    looped = repetition(frames, reference.sample_rate) < cfg.looping_ratio * real_rep
    frozen = spectral_change(frames) < cfg.frozen_ratio * real_change
    return float((looped | frozen).double().mean())


_EVIDENCE = {
    # reason: (the reported metric that shows it, the rule it broke)
    D_OVERPOWERED: (SEPARATION_METRIC, "≥ {c.d_separation} for {c.d_patience} checks running"),
    SILENCE: ("quality/loudness_dbfs", "{c.silence_margin_db:g} dB below the real audio's level"),
    STATIC: (
        "quality/flatness",
        "noise-like: ≥ real + {c.static_margin}, ≥ {c.static_ratio}× real",
    ),
    STAGNANT: ("quality/spectral_change", "second half stuck (level, activity or spectrum)"),
    LOOPING: (
        "quality/repetition",
        "repetition or spectral change < {c.looping_ratio} × the real clips' 10 % quantile",
    ),
    MODE_COLLAPSE: ("quality/diversity_ratio", "< {c.diversity_min}"),
    NOISE_IGNORED: ("quality/noise_spread", "< {c.noise_spread_min}"),
}


def evidence(reason: str, report: dict, config: CollapseConfig | None = None) -> str:
    """What a report measured that made `reason` fire, in words: the metric, its value, the
    rule and the report, e.g. "quality/repetition = 0.012 at report 3 (rule: ...)"."""
    cfg = config or CollapseConfig()
    where = f"at report {report.get('reports', '?')}, step {report.get('step', '?')}"
    if reason == EXPLODING_GRADIENTS:
        grads = {k: v for k, v in report.items() if k.startswith("grad/")}
        worst = max(grads, key=lambda k: grads[k], default=None)
        value = f"{worst} = {grads[worst]:.3g}" if worst else "a gradient norm"
        return f"{value} {where} (rule: > {cfg.grad_norm_max:g} for {cfg.grad_patience} checks)"
    if reason == NON_FINITE:
        return f"a loss, metric or weight was NaN or infinite {where}"
    if reason not in _EVIDENCE:
        detail = report.get("collapse/detail")
        return f"{detail} {where}" if detail else where
    metric, rule = _EVIDENCE[reason]
    value = report.get(metric)
    shown = f"{metric} = {value:.3g}" if isinstance(value, (int, float)) else f"{metric} n/a"
    return f"{shown} {where} (rule: {rule.format(c=cfg)})"
