"""The final fit (Hyperband's last rung): the last `final_share` of a search's time budget
continues its best `final_trials` trials, each from its best checkpoint, until the budget ends.

Without it a search ends with every trial about as young as ASHA's first rungs left it: the
budget spread over many short lives. The final fit is a Tune experiment of its own, in
`Experiment.final_path` (the folder `final` inside the search's), so the search's state is
never touched and a driver that dies during the final fit restores it (each trial going on
from its own last checkpoint) instead of starting another. Its checkpoints are ranked with
the search's (`ranking.load_trials`); its trials are named in the leaderboard as the final
fit of the trial they continue.

A search without a time budget has no final fit: its trials run their `max_reports`.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import PurePosixPath
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning import ranking, search
from samplegan_tune.tuning.experiment import FINAL_FIT, Experiment
from samplegan_tune.tuning.outcomes import SURVIVED
from samplegan_tune.tuning.trainable import CONTINUES, START, START_STEP
from samplegan_tune.tuning.trial import TrialData

FINAL_MAX_REPORTS = 1_000_000  # the budget, not a count of reports, ends a final fit


def budget(exp: Experiment, searched: float | None = None) -> float:
    """Seconds the final fit may run (0: no final fit): its share of the time budget, or what
    the search left of the budget when it ended sooner (`searched`: the seconds it ran)."""
    share = (exp.time_budget or 0.0) * exp.settings.final_share
    if share <= 0 or searched is None:
        return share
    return max(share, exp.time_budget - searched)


def run(exp: Experiment, data: TrialData, searched: float | None = None) -> bool:
    """Run (or restore and finish) the final fit; True when the user interrupted it.

    `searched`: how long the search ran in this process (None after a resume: the final fit
    then gets its share)."""
    seconds = budget(exp, searched)
    if seconds <= 0:
        return False
    search.quiet_ray()
    trainable = search.trainable_for(exp, data, _settings(exp))
    if tune.Tuner.can_restore(exp.final_path):
        if _finished(exp):
            return False
        print(f"[final fit] resuming {exp.final_path}", flush=True)
        tuner = tune.Tuner.restore(exp.final_path, trainable=trainable, resume_errored=True)
        return search.fit(tuner, exp)
    configs = picks(exp)
    if not configs:
        print("[final fit] every trial collapsed: nothing to continue", flush=True)
        return False
    for config in configs:
        print(
            f"[final fit] continuing trial {config[CONTINUES]} from its best checkpoint "
            f"(step {config[START_STEP]}) for the last {seconds:.0f} s",
            flush=True,
        )
    return search.fit(_tuner(exp, trainable, configs, seconds), exp)


def picks(exp: Experiment) -> list[dict[str, Any]]:
    """The final-fit trial configs: the best `final_trials` survivors of the search (no
    detector stopped them), each with the checkpoint it starts from.

    Best means the lowest healthy search score; a survivor every report of which a detector
    flagged (within its grace) comes after those, the longest-trained first: an early flag
    does not say it stays collapsed, and the final fit is its chance to learn.
    """
    trials, summaries = ranking.load_trials(exp, final=False)
    by_id = {t.trial_id: t for t in trials}
    survivors = sorted(
        (s for s in summaries if s.outcome in SURVIVED),
        key=lambda s: (s.best_score, -s.steps),
    )
    configs = []
    for summary in survivors:
        if len(configs) == exp.settings.final_trials:
            break
        best = ranking.best_checkpoint_result(by_id[summary.trial_id])
        if best is None:
            continue
        where = "/".join(PurePosixPath(best.checkpoint.path).parts[-2:])  # trial_X/checkpoint_N
        config = dict(by_id[summary.trial_id].config)
        config.update(
            {
                CONTINUES: summary.trial_id,
                START: where,
                START_STEP: int(best.metrics.get("step", 0)),
            }
        )
        configs.append(config)
    return configs


def _settings(exp: Experiment) -> Any:
    return dataclasses.replace(exp.settings, max_reports=FINAL_MAX_REPORTS)


def _tuner(
    exp: Experiment, trainable: Any, configs: list[dict[str, Any]], seconds: float
) -> tune.Tuner:
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_Continuations(configs),
            num_samples=len(configs),
            max_concurrent_trials=exp.settings.max_concurrent or None,
            time_budget_s=seconds,
            trial_dirname_creator=search.trial_dirname,
        ),
        run_config=search.run_config(exp, name=FINAL_FIT, total=len(configs)),
    )


class _Continuations(Searcher):
    """Hands out the final-fit configs, one per trial, in order (Tune's own generator wants
    every key in one param space; a conditional param is in one config and not another)."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__(metric=SCORE, mode="min")
        self.configs, self.given = configs, 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return dict(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump((self.configs, self.given), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.configs, self.given = pickle.load(handle)


def _finished(exp: Experiment) -> bool:
    """Whether every final-fit trial has ended (the budget, or a collapse, stopped it)."""
    trials = tune.ExperimentAnalysis(exp.final_path).trials
    return bool(trials) and all(t.status in ("TERMINATED", "ERROR") for t in trials)
