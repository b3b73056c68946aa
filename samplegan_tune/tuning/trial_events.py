"""TensorBoard for a search: each trial's curves under our own metric names, and an HPARAMS
table of the searched params against the quality metrics (`tensorboard --logdir results/NAME`).

Ray's own TBXLoggerCallback, which this replaces, prefixes every tag with `ray/tune/`, plots the
collapse sentinel (COLLAPSED_SCORE) as if it were a score, and puts every config field and its
bookkeeping (`done`, `pid`, …) into HPARAMS. The rollout audio is written by the trainable
into the same trial folder (see trainable.py).
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TRAINING_ITERATION
from tensorboardX.summary import hparams

from samplegan_tune.judge.collapse import REASON_METRIC
from samplegan_tune.judge.metrics import METRICS, SCORE
from samplegan_tune.tuning.outcomes import trial_outcome
from samplegan_tune.tuning.trial import COLLAPSED_SCORE

BEST_SCORE = "quality/best_score"  # the lowest healthy quality/score so far: Optuna's value
OUTCOME = "outcome"  # an HPARAMS column: "completed", "stopped_early", a collapse reason, …
HPARAM_METRICS = (BEST_SCORE, *METRICS)
_HPARAM_TYPES = (str, bool, int, float)


class TrialEvents(TBXLoggerCallback):
    """Ray's TensorBoard logger for our trials: one event file per trial folder (the driver's).

    Args:
        params: the searched params (HPARAMS columns, with the trial's outcome).
        max_reports: reports of a trial that runs to the end (to tell its outcome).
    """

    def __init__(self, params: list[str], max_reports: int) -> None:
        super().__init__()
        self._params, self._max_reports = params, max_reports
        self._best: dict[str, float] = {}

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        """Write the result's curves, the best healthy quality/score so far and any collapse reason
        to the trial's event file."""
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer, step = self._trial_writer[trial], result[TRAINING_ITERATION]
        values = curve_values(result)
        for key, value in values.items():
            writer.add_scalar(key, value, global_step=step)
        if SCORE in values and not result.get(REASON_METRIC):
            best = min(result[SCORE], self._best.get(trial.trial_id, math.inf))
            self._best[trial.trial_id] = best
            writer.add_scalar(BEST_SCORE, best, global_step=step)
        if result.get(REASON_METRIC):
            detail = result.get("collapse/detail") or ""
            writer.add_text(REASON_METRIC, f"{result[REASON_METRIC]} {detail}".strip(), step)
        self._trial_result[trial] = result
        writer.flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        """Write the trial's HPARAMS row (searched params and outcome) and close its event file."""
        writer = self._trial_writer.pop(trial, None)
        result = self._trial_result.pop(trial, None) or {}
        if writer is None:
            return
        values = {k: trial.config[k] for k in self._params if k in trial.config}
        values = {k: v for k, v in values.items() if isinstance(v, _HPARAM_TYPES)}
        values[OUTCOME] = self._outcome(trial, result, failed)
        for summary in hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0)):
            writer.file_writer.add_summary(summary)
        writer.close()

    def _outcome(self, trial: Any, result: dict, failed: bool) -> str:
        best = self._best.get(trial.trial_id)
        return trial_outcome(result, failed, self._max_reports, best)[2]


def curve_values(result: dict) -> dict[str, float]:
    """The result's metrics worth a curve: our namespaced ones (`loss/d`, `quality/score`),
    finite, without Ray's bookkeeping (not namespaced) and without the collapse sentinel."""
    values = {
        k: float(v)
        for k, v in result.items()
        if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if values.get(SCORE, 0.0) >= COLLAPSED_SCORE:
        del values[SCORE]
    return {k: v for k, v in values.items() if math.isfinite(v)}
