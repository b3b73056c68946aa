"""How a trial ended, named once: the outcome names the study, the leaderboard and the page
use, and the rules that give a finished trial its outcome, its Optuna state and value, and
its c-TPE constraint. No Ray here: the report side (`dashboard`, `trial_events`, `ranking`)
reads these without importing the search."""

from __future__ import annotations

import math

from optuna.trial import TrialState

from samplegan_tune.judge.collapse import REASON_METRIC
from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning.trial import COLLAPSED_SCORE, FLAGGED, REPORTS, UNTRAINED

OUTCOME_ATTR = "outcome"  # Optuna user attribute: "completed", a collapse reason, ...
TUNE_ID_ATTR = "tune_trial_id"  # Optuna user attribute: the Tune trial's id
COMPLETED = "completed"  # ran all its reports
STOPPED_EARLY = "stopped_early"  # ASHA cut the trial at a rung
ERRORED = "error"
LOST = "lost"  # still RUNNING in the study when the search ended
BUDGET = "stopped_by_budget"  # still running when --time-budget ended the search
FINAL_FIT = "final_fit"  # a final-fit trial the budget ended (final_fit.py)
INVALID_CONFIG = "invalid_config"  # a sampled combination the config rejects
OUT_OF_MEMORY = "out_of_memory"
SURVIVED = (COMPLETED, STOPPED_EARLY, BUDGET, FINAL_FIT)  # no detector stopped them
NEVER_RANKED = (ERRORED, INVALID_CONFIG, OUT_OF_MEMORY)  # nothing trained worth hearing
COLLAPSE_CONSTRAINT = "collapsed"  # Optuna constraint: > 0 when the trial collapsed


def collapse_violation(
    result: dict, error: bool, max_reports: int, best: float | None = None
) -> float:
    """The `COLLAPSE_CONSTRAINT` value of a finished trial (module docstring): 0 when it did not
    collapse (completed, stopped early, cut by the budget, errored), else
    (max_reports − reports + 1) / max_reports, reports counting the one that collapsed."""
    if error or not ended_by(result, _healthy(result, best)):
        return 0.0
    reports = min(max(int(result.get(REPORTS, 0)), 1), max_reports)
    return (max_reports - reports + 1) / max_reports


def trial_outcome(
    result: dict, error: bool, max_reports: int, best: float | None = None
) -> tuple[TrialState, float | None, str]:
    """(Optuna state, value to tell, outcome name) for a finished Tune trial's last result.

    A completed trial's value is its best healthy report's score (`best`), the quantity the
    ranking picks its checkpoint and its candidates by; the last report's when not given.
    """
    value = result.get(SCORE) if best is None else best
    healthy = _healthy(result, best)
    reason = ended_by(result, healthy)
    if error:
        return TrialState.FAIL, None, reason or ERRORED
    if reason or not healthy:
        return TrialState.PRUNED, None, reason or "no_score"
    if result.get(REPORTS, 0) < max_reports:
        return TrialState.PRUNED, None, STOPPED_EARLY
    return TrialState.COMPLETE, float(value), COMPLETED


def ended_by(result: dict, healthy: bool) -> str:
    """The collapse a trial ended in: the detector that stopped it or, when it never had a
    healthy report, the one that flagged its last (a detector that only flags leaves ASHA or
    the budget to end such a trial: the sampler still learns that it collapsed)."""
    flagged = result.get(FLAGGED) or ""
    if result.get(REASON_METRIC) or healthy or flagged == UNTRAINED:
        return result.get(REASON_METRIC) or ""
    return flagged


def _healthy(result: dict, best: float | None) -> bool:
    """Whether the trial has a usable score: `best` (its best healthy report) or its last."""
    value = result.get(SCORE) if best is None else best
    return value is not None and math.isfinite(value) and value < COLLAPSED_SCORE
