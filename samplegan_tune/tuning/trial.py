"""One search trial's work, without Ray: train in report intervals, score rollouts, detect
collapse. `trainable.py` is the Ray glue around it; `ranking.py` reuses `score_model`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from samplegan_tune.audio.corpus import Corpus, WindowSampler
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.judge import collapse
from samplegan_tune.judge.metrics import NOISE_SPREAD, SCORE, RealReference, evaluate_clips
from samplegan_tune.models import ModelFamily
from samplegan_tune.train.rollout import rollout
from samplegan_tune.train.trainer import Trainer
from samplegan_tune.tuning.space import SearchSettings

COLLAPSED_SCORE = 1.0e6  # reported instead of NaN/None: ASHA never stops a NaN trial
REPORTS = "reports"  # how many report intervals a trial has finished
FLAGGED = "collapse/flagged"  # a rollout detector that fired within the grace period
PRIMER_SEED = 7  # which held-out windows prime the evaluation rollouts
RESEED = 1_000_003  # noise seed offset of the second rollout of a primer (noise spread)
ADVERSARIAL_STEPS = "train/adversarial_steps"  # `Trainer.adversarial_steps`: ASHA's clock
GENERATOR_STEPS = "train/generator_steps"  # `Trainer.generator_steps`: 0 = G never updated
UNTRAINED = "untrained"  # the flag of a report before G's first update: never ranked
JUDGE_PRIMER_SECONDS = 3.0  # audio before each rollout the drift metrics compare it with


@dataclass(frozen=True, eq=False)
class TrialData:
    """What every trial shares: the prepared corpus and the real-side metric statistics."""

    train: Corpus
    heldout: Corpus  # the search part of the held-out audio: primes every report's rollouts
    reference: RealReference
    description: str  # what the data was, for manifests
    final: Corpus | None = None  # the final part: primes the re-ranking, disjoint from heldout
    final_reference: RealReference | None = None  # from final-part clips of rank_seconds

    @property
    def ranking_part(self) -> tuple[Corpus, RealReference]:
        """(corpus, reference) the final re-ranking uses (the search part if none is set)."""
        if self.final is None or self.final_reference is None:
            return self.heldout, self.reference
        return self.final, self.final_reference


def reference_clips(
    heldout: Corpus, settings: SearchSettings, sample_rate: int, seconds: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out (primers (N, P), clips (N, T)) the reference statistics are computed from:
    each clip the true continuation of its primer.

    `seconds` defaults to the search's rollout length; the ranking asks for its own. Both are
    cut to fit the shortest held-out file: the clip to at most half of it, the primer
    (`JUDGE_PRIMER_SECONDS`) to the rest.
    """
    count = max(2 * settings.eval_rollouts, settings.rank_rollouts, 16)
    shortest = int(heldout.lengths.min())
    length = min(round((seconds or settings.eval_seconds) * sample_rate), shortest // 2)
    primer = min(round(JUDGE_PRIMER_SECONDS * sample_rate), shortest - length)
    windows = WindowSampler(heldout).fixed_windows(count, primer + length, seed=PRIMER_SEED + 1)
    return windows[:, :primer], windows[:, primer:]


def score_model(
    model: ModelFamily,
    heldout: Corpus,
    reference: RealReference,
    rollouts: int,
    seconds: float,
    seed: int = 0,
) -> tuple[dict[str, float | None], dict[str, str], torch.Tensor]:
    """Quality metrics of `rollouts` primed continuations of held-out audio.

    Each rollout continues the last `cfg.context` samples of a held-out window at least
    `JUDGE_PRIMER_SECONDS` long, which the drift metrics compare it with. The first
    max(2, rollouts / 4) primers (at most all) are rolled out a second time with another
    noise seed, for `quality/noise_spread` (a quarter more rollout time, not double).

    Returns (metrics, reasons for unavailable ones, the clips (B, T) of the first seed).
    """
    cfg = model.cfg
    judged = round(JUDGE_PRIMER_SECONDS * cfg.sample_rate)
    window = min(max(cfg.context, judged), int(heldout.lengths.min()))
    primers = WindowSampler(heldout).fixed_windows(rollouts, window, PRIMER_SEED + seed)
    length, again = round(seconds * cfg.sample_rate), min(rollouts, max(2, rollouts // 4))
    was_training = model.training
    model.eval()
    clips = rollout(model, primers, length, seed).float().cpu()
    reseeded = rollout(model, primers[:again], length, seed + RESEED).float().cpu()
    model.train(was_training)
    values, reasons = evaluate_clips(clips, reference, reseeded, primers=primers)
    return values, reasons, clips


class Trial:
    """A Trainer plus what a search needs around it: report intervals, scores, collapse."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: TrialData,
        settings: SearchSettings,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg, self.data, self.settings = cfg, data, settings
        self.trainer = Trainer(cfg, data.train, data.heldout, device)
        self.monitor = collapse.CollapseMonitor()
        self.reports = 0
        self.last_clips: torch.Tensor | None = None  # (B, T) the last report's rollouts

    @property
    def finished(self) -> bool:
        """Whether the trial has made all its `max_reports` reports."""
        return self.reports >= self.settings.max_reports

    def run_interval(self) -> dict[str, Any]:
        """Train `steps_per_report` steps (fewer if it collapses), then score the model.

        Returns the metrics to report: the last step's, the quality metrics, "reports", and
        "collapse/reason" ("" when healthy); a collapsed trial reports COLLAPSED_SCORE.
        """
        reason, flagged, metrics = None, None, {}
        self.last_clips = None
        started = time.perf_counter()
        for _ in range(self.settings.steps_per_report):
            metrics = self.trainer.step()
            reason = self.monitor.check_training(metrics)
            if reason:
                break
        if not reason and not collapse.weights_finite(self.trainer.model):
            reason = collapse.NON_FINITE
        trained = time.perf_counter()
        quality: dict[str, float | None] = {}
        if not reason and self.trainer.generator_steps == 0:
            flagged, quality = UNTRAINED, {SCORE: None}  # stage 1: no generator to judge yet
        elif not reason:
            quality, clips = self._score()
            # Every report is judged by every detector; until a detector's step in the space's
            # `stop_after` (its grace), it only flags the report (its checkpoint can never be
            # ranked: it scores COLLAPSED_SCORE) and the trial goes on learning.
            spread = quality.get(NOISE_SPREAD)
            fired = self.monitor.check_rollouts(clips, self.data.reference, spread)
            steps = self.trainer.adversarial_steps
            reason = next((d for d in fired if self.settings.stops(d, steps)), None)
            flagged = fired[0] if fired else None
            if flagged and not reason:
                quality = {**quality, SCORE: None}
        self.reports += 1
        report = self._report(metrics, quality, reason)
        report[FLAGGED] = "" if reason else flagged or ""
        report["time/train_s"] = trained - started
        report["time/eval_s"] = time.perf_counter() - trained
        return report

    def _score(self) -> tuple[dict[str, float | None], torch.Tensor]:
        quality, _, clips = score_model(
            self.trainer.model,
            self.data.heldout,
            self.data.reference,
            self.settings.eval_rollouts,
            self.settings.eval_seconds,
        )
        self.last_clips = clips
        return quality, clips

    def _report(
        self, metrics: dict[str, float], quality: dict[str, float | None], reason: str | None
    ) -> dict[str, Any]:
        report: dict[str, Any] = {k: v for k, v in metrics.items() if math.isfinite(v)}
        report.update({k: v for k, v in quality.items() if v is not None and math.isfinite(v)})
        score = quality.get(SCORE)
        if reason or score is None or not math.isfinite(score):
            report[SCORE] = COLLAPSED_SCORE
        report[collapse.REASON_METRIC] = reason or ""
        report[REPORTS] = self.reports
        report["step"] = self.trainer.step_count
        report[ADVERSARIAL_STEPS] = self.trainer.adversarial_steps
        report[GENERATOR_STEPS] = self.trainer.generator_steps
        return report

    def state_dict(self) -> dict[str, Any]:
        """The trainer's state, with the report count and the collapse monitor's counters."""
        monitor = self.monitor.state_dict()
        return {**self.trainer.state_dict(), REPORTS: self.reports, "monitor": monitor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.trainer.load_state_dict(state)
        self.reports = int(state[REPORTS])
        self.monitor.load_state_dict(state["monitor"])
