"""Search: a space → OptunaSearch (TPE) + ASHA + collapse stopper → Tuner, and resume.

Fixes Ray/Optuna traps: a collapsed, failed or early-stopped trial reaches Optuna
as PRUNED/FAIL with its reason (never COMPLETE with a truncated value), never reaches ASHA as
NaN, and no Optuna trial is left RUNNING when the search ends.

Every finished trial informs the sampler (constrained TPE, c-TPE): it carries the constraint
`COLLAPSE_CONSTRAINT`, ≤ 0 for a healthy trial, > 0 for one that collapsed: TPE then counts a
collapsed region among the bad ones ("above"), where before a collapsed trial, PRUNED without
an intermediate value, looked like any other. The violation is larger the earlier the trial
collapsed (1 at its first report, 1 / max_reports at its last), so while nothing is healthy
yet, TPE prefers the regions that lasted longest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import signal
import threading
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from samplegan_tune.judge.collapse import REASON_METRIC
from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning.dashboard import name_objective
from samplegan_tune.tuning.disk_guard import DiskGuard
from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.outcomes import (
    BUDGET,
    COLLAPSE_CONSTRAINT,
    ERRORED,
    LOST,
    OUTCOME_ATTR,
    TUNE_ID_ATTR,
    collapse_violation,
    trial_outcome,
)
from samplegan_tune.tuning.scheduler import asha
from samplegan_tune.tuning.space import Param, SearchSettings
from samplegan_tune.tuning.trainable import train_trial
from samplegan_tune.tuning.trial import COLLAPSED_SCORE, TrialData
from samplegan_tune.tuning.trial_events import TrialEvents

WAIT_NOTE_S = 60.0  # how often to say that no trial can start yet
# Ray's own console output, replaced by ours: its banner and TensorBoard hint (it names a
# folder in Ray's temp dir, not where the trials' event files are), its resource warning
# (we print our own line), and its snapshot-frequency warning.
RAY_QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "1e9",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S_AUTOSCALER": "1e9",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}
# A resumed search restores the searcher from its last saved state: a trial that the crashed
# driver told Optuna about after that save looks unfinished here, runs out its interval and
# is told again. The study keeps the outcome it already has.
ALREADY_TOLD = optuna.exceptions.UpdateFinishedTrialError


class OutcomeAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna how a trial really ended (see module docstring)."""

    def __init__(self, *args: Any, max_reports: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_reports = max_reports
        self._best: dict[str, float] = {}  # saved with the searcher's state (its __dict__)
        self._last_step: dict[str, int | None] = {}  # the last report seen of each trial

    # Saved without the study (Tune's searcher state and tuner.pkl): its storage names optuna.db
    # by absolute path, so a copied experiment's resume told the original's study and a moved
    # one's could not start. `use_study` binds the one in the folder the search runs in now.
    _BOUND_TO_STUDY = ("_storage", "_ot_study", "_ot_trials")

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._BOUND_TO_STUDY}
        state["_ot_trial_ids"] = {k: t._trial_id for k, t in self._ot_trials.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._storage, self._ot_study, self._ot_trials = None, None, {}

    def save(self, checkpoint_path: str) -> None:
        """Pickle the searcher's state, without the study it is bound to, to `checkpoint_path`."""
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:
        """Take the saved state, keeping the study this searcher is bound to now."""
        storage = self._storage
        with open(checkpoint_path, "rb") as handle:
            saved = pickle.load(handle)
        # A state saved before this class left the study out carries it, bound to the old path.
        trials = saved.pop("_ot_trials", {})
        saved.setdefault("_ot_trial_ids", {k: t._trial_id for k, t in trials.items()})
        self.__dict__.update({k: v for k, v in saved.items() if k not in self._BOUND_TO_STUDY})
        if storage is not None:
            self.use_study(storage)

    def use_study(self, storage: optuna.storages.BaseStorage) -> None:
        """Bind the searcher, and each trial it has open, to the study in `storage`."""
        self._storage = storage
        self._ot_study = optuna.load_study(
            study_name=self._study_name,
            storage=storage,
            sampler=self._sampler,
            pruner=optuna.pruners.NopPruner(),
        )
        ids = self.__dict__.pop("_ot_trial_ids", {})
        self._ot_trials = {k: optuna.trial.Trial(self._ot_study, i) for k, i in ids.items()}

    def suggest(self, trial_id: str) -> dict | None:
        """OptunaSearch's config; its Optuna trial is tagged with the Tune id (TUNE_ID_ATTR)."""
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:  # so the study's trials can be matched to Tune's
            self._ot_trials[trial_id].set_user_attr(TUNE_ID_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Note the trial's last report; pass a healthy score (finite, below COLLAPSED_SCORE) on to
        Optuna and keep the trial's best."""
        self._last_step[trial_id] = result.get(TRAINING_ITERATION)
        score = result.get(SCORE, math.nan)
        if math.isfinite(score) and score < COLLAPSED_SCORE:
            self._best[trial_id] = min(score, self._best.get(trial_id, math.inf))
            with contextlib.suppress(ALREADY_TOLD):
                super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Tell Optuna, once, how the trial really ended: state, best score, outcome and collapse
        constraint. A last result not seen yet (a scheduler's STOP) is taken as a report first."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        last = (result or {}).get(TRAINING_ITERATION)
        if not error and last is not None and last != self._last_step.get(trial_id):
            self.on_trial_result(trial_id, result)  # a scheduler's STOP passes it here only
        best = self._best.get(trial_id)
        state, value, outcome = trial_outcome(result or {}, error, self._max_reports, best)
        ot_trial = self._ot_trials[trial_id]
        violation = collapse_violation(result or {}, error, self._max_reports, best)
        with contextlib.suppress(ALREADY_TOLD):
            ot_trial.set_user_attr(OUTCOME_ATTR, outcome)
            if COLLAPSE_CONSTRAINT not in ot_trial.constraints:
                ot_trial.set_constraint(COLLAPSE_CONSTRAINT, violation)
            self._ot_study.tell(ot_trial, value, state=state)
        self._completed_trials.add(trial_id)


class CollapseStopper(tune.Stopper):
    """Ends a trial at once when it reports a collapse reason."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        """Whether the result carries a collapse reason (then the trial stops)."""
        return bool(result.get(REASON_METRIC))

    def stop_all(self) -> bool:
        """Never: only single trials stop."""
        return False


class ProgressLine(tune.Callback):
    """A line when a trial starts (its sampled params), one per finished trial and at most
    every 15 s on results, a heartbeat every minute while trials train, and a line a minute
    while no trial can start (the cluster is short of what a trial asks)."""

    def __init__(
        self, total: int, resources: dict[str, float] | None = None, params: tuple[Param, ...] = ()
    ) -> None:
        self.total, self.best, self.last_print = total, math.inf, time.monotonic()
        self.resources, self.params = resources or {}, params
        self.done: dict[str, str] = {}
        self.waiting_since: float | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **_) -> None:
        """Print the trial's sampled active params; a restarted trial is no longer counted done."""
        self.done.pop(trial.trial_id, None)  # a trial restarted (resume, retry) is not done
        active = [p.name for p in self.params if p.active(trial.config)]
        shown = ", ".join(f"{k}={_short(trial.config[k])}" for k in active if k in trial.config)
        print(f"[search] trial {trial.trial_id} started: {shown}", flush=True)

    def on_step_end(self, iteration: int, trials: list, **_) -> None:
        """Print the progress line every WAIT_NOTE_S while trials run, or a waiting line every
        WAIT_NOTE_S while trials are pending and none runs."""
        if any(t.status == "RUNNING" for t in trials):
            self.waiting_since = None
            if time.monotonic() - self.last_print >= WAIT_NOTE_S:
                self._print(trials)
            return
        if not any(t.status == "PENDING" for t in trials):
            self.waiting_since = None
            return
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        elif now - self.waiting_since >= WAIT_NOTE_S:
            self.waiting_since = now
            print(
                _waiting_line(self.resources, sum(t.status == "PENDING" for t in trials)),
                flush=True,
            )

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **_) -> None:
        """Keep the best healthy score; print the progress line at most every 15 s."""
        score = result.get(SCORE, math.inf)
        if not result.get(REASON_METRIC) and score < COLLAPSED_SCORE:
            self.best = min(self.best, score)
        if time.monotonic() - self.last_print > 15:
            self._print(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_) -> None:
        """Count the trial done, with its collapse reason if any, and print the progress line."""
        self.done[trial.trial_id] = (trial.last_result or {}).get(REASON_METRIC) or ""
        self._print(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_) -> None:
        """Count the trial done as errored and print the progress line."""
        self.done[trial.trial_id] = ERRORED
        self._print(trials)

    def _print(self, trials: list) -> None:
        self.last_print = time.monotonic()
        # Tune calls on_trial_complete before it marks the trial stopped: done, not running.
        running = sum(t.status == "RUNNING" and t.trial_id not in self.done for t in trials)
        reasons = [r for r in self.done.values() if r]
        by_reason = ", ".join(f"{r} {reasons.count(r)}" for r in sorted(set(reasons)))
        best = f"{self.best:.3f}" if math.isfinite(self.best) else "-"
        print(
            f"[search] {len(self.done)}/{self.total} done, {running} running, "
            f"{len(reasons)} collapsed{f' ({by_reason})' if by_reason else ''}"
            f" | best quality/score {best} (lower is better)",
            flush=True,
        )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _waiting_line(asked: dict[str, float], pending: int) -> str:
    import ray

    have = ray.available_resources()
    return (
        f"[search] waiting for resources: {pending} trial(s) pending, each asks "
        f"{asked.get('cpu', 0):g} CPU + {asked.get('gpu', 0):g} GPU; free now "
        f"{have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU (a cluster's autoscaler may "
        "be adding nodes; Ctrl-C stops, `samplegan-tune resume` goes on)"
    )


def build_tuner(exp: Experiment, data: TrialData, baseline: bool = False) -> tune.Tuner:
    """A Tuner for a new search described by `exp`.

    `baseline=True` gives the comparison point of benchmarks/search_efficiency.py: random
    sampling, no early stopping (FIFO); a collapsed trial stops in either.
    """
    settings = exp.settings
    if baseline:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=exp.seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=exp.seed, multivariate=True, n_startup_trials=settings.startup_trials
        )
    searcher = OutcomeAwareOptunaSearch(
        space=exp.space.sample,
        metric=SCORE,
        mode="min",
        seed=exp.seed,
        storage=exp.optuna_storage(),
        study_name=exp.name,
        points_to_evaluate=exp.first_points or None,
        sampler=sampler,
        max_reports=settings.max_reports,
    )
    name_objective(exp)  # the searcher has created the study
    scheduler = FIFOScheduler() if baseline else asha(exp)
    return tune.Tuner(
        trainable_for(exp, data),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=exp.num_samples,
            max_concurrent_trials=settings.max_concurrent or None,
            time_budget_s=search_budget(exp),
            trial_dirname_creator=trial_dirname,
        ),
        run_config=run_config(exp),
    )


def search_budget(exp: Experiment) -> float | None:
    """Seconds the search's trials may run: the time budget less the final fit's share."""
    if not exp.time_budget:
        return None
    return exp.time_budget * (1.0 - exp.settings.final_share)


def trial_dirname(trial: Any) -> str:
    """A trial's folder name: trial_<trial id>."""
    return f"trial_{trial.trial_id}"


def trial_resources(exp: Experiment) -> dict[str, float]:
    """The CPUs and GPUs one trial asks for (the experiment's settings)."""
    return {"cpu": exp.settings.cpus_per_trial, "gpu": exp.settings.gpus_per_trial}


def trainable_for(exp: Experiment, data: TrialData, settings: SearchSettings | None = None) -> Any:
    """The trial function with its shared data (`settings`: the experiment's by default)."""
    fn = tune.with_parameters(
        train_trial, data=data, settings=settings or exp.settings, root=exp.tune_path
    )
    return tune.with_resources(fn, trial_resources(exp))


def run_config(
    exp: Experiment, name: str | None = None, total: int | None = None
) -> tune.RunConfig:
    """The search's RunConfig; the final fit's with `name` (a folder in the search's own) and
    its `total` trials."""
    return tune.RunConfig(
        name=name or exp.name,
        storage_path=exp.tune_path if name else exp.tune_storage_path,
        stop=CollapseStopper(),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=3, checkpoint_score_attribute=SCORE, checkpoint_score_order="min"
        ),
        failure_config=tune.FailureConfig(max_failures=3),
        # the trials' own files (their TensorBoard rollout audio) go to their trial folders
        sync_config=tune.SyncConfig(sync_artifacts=True),
        callbacks=[
            ProgressLine(total or exp.num_samples, trial_resources(exp), exp.space.params),
            TrialEvents([p.name for p in exp.space.params], exp.settings.max_reports),
        ],
        verbose=0,
    )


def run(exp: Experiment, data: TrialData, resume: bool = False) -> bool:
    """Run (or resume) the search to the end, then close every Optuna trial still open.

    Returns True when the user interrupted it (Ctrl-C): Tune saved its state, the open
    trials stay open for `resume`.
    """
    quiet_ray()
    if resume:
        tuner = tune.Tuner.restore(
            exp.tune_path, trainable=trainable_for(exp, data), resume_errored=True
        )
        relocate(tuner, exp)
    else:
        tuner = build_tuner(exp, data)
    interrupted = fit(tuner, exp)
    if not interrupted:
        close_open_trials(exp)
    return interrupted


def quiet_ray() -> None:
    """Ray's and Optuna's console output down to what our own lines do not say."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A trial that has not reported yet has no result file; Ray warns about it at the end.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def fit(tuner: tune.Tuner, exp: Experiment) -> bool:
    """`tuner.fit()`; True when the user interrupted it (Ctrl-C), Tune having saved its state.

    A disk that fills up (or nearly) stops it the same way, then raises OutputError."""
    hint = f"make room, then run: samplegan-tune resume {exp.folder}"
    guard = DiskGuard(exp.folder, hint)  # a local search's Tune folder; else its own files
    config = tuner._local_tuner._run_config  # restored from tuner.pkl on resume: one guard
    config.callbacks = [c for c in config.callbacks or [] if not isinstance(c, DiskGuard)]
    config.callbacks.append(guard)
    with _InterruptWatch() as watch:
        tuner.fit()
    guard.check()
    return watch.interrupted


def relocate(tuner: tune.Tuner, exp: Experiment) -> None:
    """Point a restored search at the experiment where it is now (it may have been copied
    or moved): the searcher at its study, the scheduler at its folder for new trials.

    Tune restores both from tuner.pkl and offers no public way to reach them; they are the
    objects `build_tuner` made, kept in the restored Tuner's config. ASHA keeps no state
    across a resume (Tune saves none), so a new one replaces the restored one: also for a
    search from before `FolderASHA`.
    """
    config = tuner._local_tuner._tune_config
    searcher = config.search_alg
    if not isinstance(searcher, OutcomeAwareOptunaSearch):
        raise RuntimeError(f"restored search has searcher {type(searcher).__name__}")
    searcher.use_study(exp.optuna_storage())
    if isinstance(config.scheduler, ASHAScheduler):  # not a benchmark's FIFO baseline
        local = exp.tune_storage is None  # remote: Ray itself moves to the URI it is given
        config.scheduler = asha(exp, exp.tune_path if local else None)


class _InterruptWatch:
    """Tells whether Tune's own Ctrl-C handler ran during `fit()`, and prints our line
    instead of Ray's ("Resume experiment with: Tuner.restore(...)" is not our command).

    Tune replaces the SIGINT handler during `fit()` and, on the first Ctrl-C, puts back the
    one it found: ours. So our handler is in place afterwards only if the user interrupted.
    A second Ctrl-C reaches our handler and stops at once (KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._active = threading.current_thread() is threading.main_thread()
        self._filter = _RayInterruptFilter()

    def _handler(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptWatch:
        logging.getLogger("ray.tune.tune").addFilter(self._filter)
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("ray.tune.tune").removeFilter(self._filter)
        if self._active:
            self.interrupted = signal.getsignal(signal.SIGINT) == self._handler
            signal.signal(signal.SIGINT, self._previous)


class _RayInterruptFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Stop signal received"):
            print(
                "[search] stopping: saving every trial's state (Ctrl-C again quits at once)",
                flush=True,
            )
            return False
        return "Resume experiment with" not in text


def close_open_trials(exp: Experiment) -> int:
    """Close trials the study still has RUNNING when the search ended; returns how many.

    With a time budget they were cut by it (PRUNED, outcome `stopped_by_budget`); otherwise
    they were lost to a crash (FAIL, outcome `lost`).
    """
    study = optuna.load_study(study_name=exp.name, storage=exp.optuna_storage())
    still_open = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    outcome, state = (BUDGET, TrialState.PRUNED) if exp.time_budget else (LOST, TrialState.FAIL)
    for trial in still_open:
        study._storage.set_trial_user_attr(trial._trial_id, OUTCOME_ATTR, outcome)
        study.tell(trial.number, state=state)
    return len(still_open)
