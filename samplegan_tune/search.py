"""Search: a space → OptunaSearch (TPE) + ASHA + collapse stopper → Tuner, and resume.

Fixes Ray/Optuna traps (DESIGN.md): a collapsed, failed or early-stopped trial reaches Optuna
as PRUNED/FAIL with its reason (never COMPLETE with a truncated value), never reaches ASHA as
NaN, and no Optuna trial is left RUNNING when the search ends.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from samplegan_tune.collapse import REASON_METRIC
from samplegan_tune.experiment import Experiment
from samplegan_tune.metrics import SCORE
from samplegan_tune.trainable import train_trial
from samplegan_tune.trial import REPORTS, TrialData

OUTCOME_ATTR = "outcome"  # Optuna user attribute: "completed", a collapse reason, ...
STOPPED_EARLY = "stopped_early"  # ASHA cut the trial at a rung
ERRORED = "error"
LOST = "lost"  # still RUNNING in the study when the search ended
# A resumed search restores the searcher from its last saved state: a trial that the crashed
# driver told Optuna about after that save looks unfinished here, runs out its interval and
# is told again. The study keeps the outcome it already has.
ALREADY_TOLD = optuna.exceptions.UpdateFinishedTrialError


class OutcomeAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna how a trial really ended (see module docstring)."""

    def __init__(self, *args: Any, max_reports: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_reports = max_reports

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if math.isfinite(result.get(SCORE, math.nan)):
            with contextlib.suppress(ALREADY_TOLD):
                super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        state, value, outcome = trial_outcome(result or {}, error, self._max_reports)
        ot_trial = self._ot_trials[trial_id]
        with contextlib.suppress(ALREADY_TOLD):
            ot_trial.set_user_attr(OUTCOME_ATTR, outcome)
            self._ot_study.tell(ot_trial, value, state=state)
        self._completed_trials.add(trial_id)


def trial_outcome(
    result: dict, error: bool, max_reports: int
) -> tuple[TrialState, float | None, str]:
    """(Optuna state, value to tell, outcome name) for a finished Tune trial's last result."""
    reason = result.get(REASON_METRIC) or ""
    value = result.get(SCORE)
    if error:
        return TrialState.FAIL, None, reason or ERRORED
    if reason or value is None or not math.isfinite(value):
        return TrialState.PRUNED, None, reason or "no_score"
    if result.get(REPORTS, 0) < max_reports:
        return TrialState.PRUNED, None, STOPPED_EARLY
    return TrialState.COMPLETE, float(value), "completed"


class CollapseStopper(tune.Stopper):
    """Ends a trial at once when it reports a collapse reason."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return bool(result.get(REASON_METRIC))

    def stop_all(self) -> bool:
        return False


class ProgressLine(tune.Callback):
    """One line per finished trial (and at most every 15 s): counts and the best so far."""

    def __init__(self, total: int) -> None:
        self.total, self.best, self.last_print = total, math.inf, 0.0
        self.done: dict[str, str] = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **_) -> None:
        if not result.get(REASON_METRIC):
            self.best = min(self.best, result.get(SCORE, math.inf))
        if time.monotonic() - self.last_print > 15:
            self._print(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_) -> None:
        self.done[trial.trial_id] = (trial.last_result or {}).get(REASON_METRIC) or ""
        self._print(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_) -> None:
        self.done[trial.trial_id] = ERRORED
        self._print(trials)

    def _print(self, trials: list) -> None:
        self.last_print = time.monotonic()
        running = sum(t.status == "RUNNING" for t in trials)
        reasons = [r for r in self.done.values() if r]
        by_reason = ", ".join(f"{r} {reasons.count(r)}" for r in sorted(set(reasons)))
        best = f"{self.best:.3f}" if math.isfinite(self.best) else "-"
        print(
            f"[search] {len(self.done)}/{self.total} done, {running} running, "
            f"{len(reasons)} collapsed{f' ({by_reason})' if by_reason else ''}"
            f" | best quality/score {best} (lower is better)",
            flush=True,
        )


def build_tuner(exp: Experiment, data: TrialData, baseline: bool = False) -> tune.Tuner:
    """A Tuner for a new search described by `exp`.

    `baseline=True` gives the comparison point of benchmarks/search_efficiency.py: random
    sampling, every trial run to the end (no ASHA, no collapse stopper).
    """
    settings = exp.settings
    if baseline:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=exp.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=exp.seed, multivariate=True)
    searcher = OutcomeAwareOptunaSearch(
        space=exp.space.sample,
        metric=SCORE,
        mode="min",
        seed=exp.seed,
        storage=exp.optuna_storage(),
        study_name=exp.name,
        points_to_evaluate=exp.start_points or None,
        sampler=sampler,
        max_reports=settings.max_reports,
    )
    scheduler = (
        FIFOScheduler()
        if baseline
        else ASHAScheduler(
            metric=SCORE,
            mode="min",
            max_t=settings.max_reports,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
        )
    )
    return tune.Tuner(
        trainable_for(exp, data),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=exp.num_samples,
            max_concurrent_trials=settings.max_concurrent or None,
            time_budget_s=exp.time_budget,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=run_config(exp, stop_collapsed=not baseline),
    )


def trainable_for(exp: Experiment, data: TrialData) -> Any:
    resources = {"cpu": exp.settings.cpus_per_trial, "gpu": exp.settings.gpus_per_trial}
    fn = tune.with_parameters(train_trial, data=data, settings=exp.settings)
    return tune.with_resources(fn, resources)


def run_config(exp: Experiment, stop_collapsed: bool = True) -> tune.RunConfig:
    return tune.RunConfig(
        name=exp.name,
        storage_path=exp.tune_storage,
        stop=CollapseStopper() if stop_collapsed else None,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=3, checkpoint_score_attribute=SCORE, checkpoint_score_order="min"
        ),
        failure_config=tune.FailureConfig(max_failures=3),
        callbacks=[ProgressLine(exp.num_samples)],
        verbose=0,
    )


def run(exp: Experiment, data: TrialData, resume: bool = False) -> None:
    """Run (or resume) the search to the end, then close every Optuna trial still open."""
    if resume:
        tuner = tune.Tuner.restore(
            exp.tune_path, trainable=trainable_for(exp, data), resume_errored=True
        )
    else:
        tuner = build_tuner(exp, data)
    tuner.fit()
    close_open_trials(exp)


def close_open_trials(exp: Experiment) -> int:
    """Mark trials the study still has RUNNING (lost to a crash) as FAIL; returns how many."""
    study = optuna.load_study(study_name=exp.name, storage=exp.optuna_storage())
    lost = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in lost:
        study._storage.set_trial_user_attr(trial._trial_id, OUTCOME_ATTR, LOST)
        study.tell(trial.number, state=TrialState.FAIL)
    return len(lost)
