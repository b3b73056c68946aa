"""Rank a finished search: re-evaluate the survivors from their best checkpoints with more
rollouts and seeds, and write leaderboard.csv / .md / .json and the listening page."""

from __future__ import annotations

import logging
import math
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from samplegan_tune.core.fileio import swap_in, temp_sibling, writing
from samplegan_tune.judge.collapse import REASON_METRIC, evidence, rollout_reasons
from samplegan_tune.judge.metrics import NOISE_SPREAD, SCORE
from samplegan_tune.judge.scale import score_scale
from samplegan_tune.models import ModelFamily
from samplegan_tune.models.checkpoint import load_checkpoint, model_from_state
from samplegan_tune.tuning.experiment import STUDY_FILE, Experiment
from samplegan_tune.tuning.leaderboard import Entry, Leaderboard, sig3, write_leaderboard
from samplegan_tune.tuning.outcomes import (
    BUDGET,
    COMPLETED,
    ERRORED,
    FINAL_FIT,
    NEVER_RANKED,
    OUTCOME_ATTR,
    STOPPED_EARLY,
    SURVIVED,
    TUNE_ID_ATTR,
)
from samplegan_tune.tuning.trainable import CHECKPOINT_FILE, CONTINUES, START_STEP
from samplegan_tune.tuning.trial import (
    ADVERSARIAL_STEPS,
    COLLAPSED_SCORE,
    GENERATOR_STEPS,
    TrialData,
    score_model,
)

RANKED = "ranked"  # ranked/<rank>/trial.pt: local copies of the ranked checkpoints
# Where a search's training steps went (`budget_split`): a group per way a trial ended.
BUDGET_GROUPS = {
    COMPLETED: "completed",
    STOPPED_EARLY: "cut by ASHA",
    BUDGET: "cut by the budget",
    FINAL_FIT: "final fit",
}


@dataclass
class TrialSummary:
    """What the listening page and the collapse summary need of every trial."""

    trial_id: str
    outcome: str  # "completed", "stopped_early" or a collapse reason
    best_score: float
    steps: int
    seconds: float
    curve: list[tuple[int, float]]  # (report, quality/score) of healthy reports
    evidence: str = ""  # for a trial that ended early: what was measured, and the rule
    continues: str = ""  # a final-fit trial: the search trial it continues
    start_step: int = 0  # a final-fit trial: the step of the checkpoint it started from

    @property
    def trained_steps(self) -> int:
        """Steps this trial itself trained (a final fit: beyond its start checkpoint)."""
        return max(0, self.steps - self.start_step)


def load_trials(exp: Experiment, final: bool = True) -> tuple[list[Any], list[TrialSummary]]:
    """(Tune trials, their summaries): the search's, then the final fit's unless `final` is
    False or there is none yet."""
    trials, summaries = _load(exp, exp.tune_path)
    if final:
        try:
            more = _load(exp, exp.final_path)
        except (ValueError, FileNotFoundError, OSError):  # no final fit (yet)
            more = ([], [])
        trials, summaries = trials + more[0], summaries + more[1]
    return trials, summaries


def _load(exp: Experiment, path: str) -> tuple[list[Any], list[TrialSummary]]:
    # A trial the budget ended before its first report has no result file: Ray warns; it is
    # summarised like the rest (no steps).
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    analysis = tune.ExperimentAnalysis(path, default_metric=SCORE, default_mode="min")
    frames = analysis.trial_dataframes
    told = _told_outcomes(exp)
    summaries = []
    for trial in analysis.trials:
        last = trial.last_result or {}
        frame = frames.get(trial.trial_id)
        curve = []
        if frame is not None and SCORE in frame and REASON_METRIC in frame:
            ok = (frame[REASON_METRIC].fillna("") == "") & (frame[SCORE] < COLLAPSED_SCORE)
            healthy = frame[ok]
            curve = [
                (int(i), float(s))
                for i, s in zip(healthy["training_iteration"], healthy[SCORE], strict=True)
            ]
        outcome = last.get(REASON_METRIC) or (ERRORED if trial.status == "ERROR" else "")
        continues = trial.config.get(CONTINUES, "")
        if continues and not outcome:
            outcome = FINAL_FIT
        if not outcome:
            full = last.get("reports", 0) >= exp.settings.max_reports
            # the budget ran out: Tune marks such a trial TERMINATED, the study says so
            cut = told.get(trial.trial_id) == BUDGET or (
                exp.time_budget and trial.status != "TERMINATED"
            )
            outcome = COMPLETED if full else BUDGET if cut else STOPPED_EARLY
        summaries.append(
            TrialSummary(
                trial.trial_id,
                outcome,
                min((s for _, s in curve), default=math.inf),
                int(last.get("step", 0)),
                float(last.get("time_total_s", 0.0)),
                curve,
                _evidence(outcome, last, exp),
                continues,
                int(trial.config.get(START_STEP, 0)),
            )
        )
    return analysis.trials, summaries


def budget_split(summaries: list[TrialSummary]) -> dict[str, int]:
    """Training steps by how their trial ended (`BUDGET_GROUPS`, "collapsed", "error"); a
    final fit's steps count there whatever ended it."""
    split: dict[str, int] = {}
    for s in summaries:
        if s.continues:
            group = BUDGET_GROUPS[FINAL_FIT]
        else:
            failed = ERRORED if s.outcome in NEVER_RANKED else "collapsed"
            group = BUDGET_GROUPS.get(s.outcome, failed)
        split[group] = split.get(group, 0) + s.trained_steps
    return split


def _told_outcomes(exp: Experiment) -> dict[str, str]:
    """Tune trial id -> the outcome the study was told (empty when there is no study)."""
    if not (exp.folder / STUDY_FILE).is_file():
        return {}
    trials = exp.study().get_trials(deepcopy=False)
    named = (t for t in trials if TUNE_ID_ATTR in t.user_attrs)
    return {t.user_attrs[TUNE_ID_ATTR]: t.user_attrs.get(OUTCOME_ATTR, "") for t in named}


def _evidence(outcome: str, last: dict, exp: Experiment) -> str:
    if outcome in (COMPLETED, FINAL_FIT):
        return ""
    if outcome == STOPPED_EARLY:
        return (
            f"ASHA: quality/score {sig3(last.get(SCORE))} at report {last.get('reports')} was "
            f"not in the best 1/{exp.settings.reduction_factor} at its rung"
        )
    if outcome == BUDGET:
        return (
            f"--time-budget {exp.time_budget:g} s ended the search at report {last.get('reports')}"
        )
    if outcome == ERRORED:
        return "the trial raised an error (see its error.txt in the experiment folder)"
    return evidence(outcome, last)


def rank(exp: Experiment, data: TrialData, top_k: int | None = None) -> Leaderboard:
    """Re-evaluate the best `top_k` survivors and write the leaderboard files.

    Each candidate's best checkpoint rolls out `rank_seconds`-long continuations of the final
    held-out part (primers the search never saw); a candidate that any collapse detector
    flags there is left off the leaderboard (and listed in its .md). When no candidate
    passes, the leaderboard holds the best attempts instead, each flagged with its failure
    (`Entry.flags`): the user still gets something to hear and export, never unlabelled.
    """
    trials, summaries = load_trials(exp)
    count = top_k or exp.settings.top_k
    survivors = sorted(
        (s for s in summaries if _candidate(s) and s.best_score < COLLAPSED_SCORE),
        key=lambda s: s.best_score,
    )[:count]
    by_id = {t.trial_id: t for t in trials}
    judged = []
    for summary in survivors:
        judged.append(_re_evaluate(exp, data, by_id[summary.trial_id], summary))
    entries = order([e for e in judged if not e.flags], exp.settings.rank_tie)
    rejected = {e.trial_id: e.flags for e in judged if e.flags}
    if not entries:  # the best attempts, each labelled with its failure
        flagged = {e.trial_id: e for e in judged}
        entries, rejected = _flagged_attempts(exp, data, summaries, by_id, flagged, count), {}
    baseline = exp.baseline_params()
    for entry in entries:
        entry.baseline = baseline is not None and entry.params == baseline
    for rank_number, entry in enumerate(entries, start=1):
        entry.rank = rank_number
    _keep_checkpoints(exp.folder, entries)
    heldout, reference = data.ranking_part
    settings = exp.settings
    scale = score_scale(
        heldout, reference, exp.base_config.segment, settings.rank_rollouts, settings.rank_seconds
    )
    board = Leaderboard(entries, scale, rejected, budget_split(summaries), settings.rank_tie)
    write_leaderboard(exp.folder, board)
    return board


def order(entries: list[Entry], tie: float) -> list[Entry]:
    """Best first: each rank goes to the entry with the most adversarial steps among those
    left whose score is within `tie` (a fraction) of the best score left.

    Scores that close do not separate models on unseen music: in the 2026-12-05 benchmark
    four candidates within 3.6 % ranked in reverse of their scores on songs the search
    never saw, the 3400-step one best (benchmarks/README). Training longer decides the tie.
    """
    left = sorted(entries, key=lambda e: e.final_score)
    ranked = []
    while left:
        close = [e for e in left if e.final_score <= left[0].final_score * (1 + tie)]
        pick = max(close, key=lambda e: e.adversarial_steps)  # the first of equals: best score
        ranked.append(pick)
        left = [e for e in left if e is not pick]
    return ranked


def _candidate(summary: TrialSummary) -> bool:
    """Whether the trial's healthy checkpoints compete: it survived the search, or it is a
    final fit (it continued a healthy checkpoint; a detector that stops it late leaves the
    checkpoints from before, as good as the one it started from)."""
    return summary.outcome in SURVIVED or bool(summary.continues)


def _flagged_attempts(
    exp: Experiment,
    data: TrialData,
    summaries: list[TrialSummary],
    by_id: dict[str, Any],
    judged: dict[str, Entry],
    count: int,
) -> list[Entry]:
    """The `count` trials that trained longest, re-evaluated (or as already judged), each
    flagged with what its long rollouts show or, failing that, why the trial ended."""
    tried = [
        s
        for s in summaries
        if s.outcome not in NEVER_RANKED and exp_best_checkpoint(by_id[s.trial_id]) is not None
    ]
    tried.sort(key=lambda s: (s.trial_id not in judged, -s.steps))
    attempts = []
    for summary in tried[:count]:
        if summary.trial_id in judged:
            entry = judged[summary.trial_id]
        else:
            entry = _re_evaluate(exp, data, by_id[summary.trial_id], summary)
            entry.flags = entry.flags or [summary.outcome]
        attempts.append(entry)
    return sorted(attempts, key=lambda e: e.final_score)


def _re_evaluate(exp: Experiment, data: TrialData, trial: Any, summary: TrialSummary) -> Entry:
    """The candidate's entry; `flags` holds the collapse reasons its long rollouts show."""
    best = best_checkpoint_result(trial)
    checkpoint = best.checkpoint
    with checkpoint.as_directory() as folder:
        state = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
    model = model_from_state(state)
    settings = exp.settings
    heldout, reference = data.ranking_part
    scores, metrics, flags = [], {}, []
    for seed in range(settings.rank_seeds):
        values, _, clips = score_model(
            model, heldout, reference, settings.rank_rollouts, settings.rank_seconds, seed
        )
        score = values.get(SCORE)
        scores.append(score if score is not None else math.inf)
        metrics = values if seed == 0 else metrics
        fired = rollout_reasons(clips, reference, noise_spread=values.get(NOISE_SPREAD))
        flags += [f for f in fired if f not in flags]
    searched = [p.name for p in exp.space.params if p.active(trial.config)]
    params = {k: trial.config[k] for k in searched if k in trial.config}  # what was sampled
    return Entry(
        rank=0,
        trial_id=trial.trial_id,
        final_score=statistics.fmean(scores),
        score_spread=statistics.pstdev(scores) if len(scores) > 1 else 0.0,
        search_score=summary.best_score,
        step=int(state["step"]),
        checkpoint=str(checkpoint.path),
        params=params,
        metrics=metrics,
        flags=flags,
        continues=summary.continues,
        adversarial_steps=int(best.metrics.get(ADVERSARIAL_STEPS, 0)),  # its report's
    )


def exp_best_checkpoint(trial: Any) -> tune.Checkpoint | None:
    """The trial's kept checkpoint with the best (lowest) quality score (see
    `best_checkpoint_result`); None when there is none to rank."""
    best = best_checkpoint_result(trial)
    return None if best is None else best.checkpoint


def best_checkpoint_result(trial: Any) -> Any | None:
    """The result (`.checkpoint`, `.metrics`) of the trial's kept checkpoint with the best
    (lowest) quality score; None when every kept checkpoint predates G's first update (stage
    1): an untrained generator is never a candidate, flagged or not.

    Flagged or collapsed reports score COLLAPSED_SCORE, so a checkpoint that any detector
    flagged is only ever picked when nothing else is left (and the caller then skips it).
    """
    results = trial.run_metadata.checkpoint_manager.best_checkpoint_results
    trained = [r for r in results if r.metrics.get(GENERATOR_STEPS, 1) > 0]  # old runs: 1
    healthy = [r for r in trained if not r.metrics.get(REASON_METRIC)]
    if not trained:
        return None
    return min(healthy or trained, key=lambda r: r.metrics.get(SCORE, math.inf))


def _keep_checkpoints(folder: Path, entries: list[Entry]) -> None:
    """Copy each entry's checkpoint to ranked/<rank>/ and point the entry at it (relative to
    the experiment). The new ranked/ is built aside and swapped in whole: a full disk or a
    kill leaves the earlier one, which the earlier leaderboard names, as it was."""
    ranked = folder / RANKED
    staging = temp_sibling(ranked)
    try:
        with writing(ranked):
            staging.mkdir(0o777)  # less the umask; stays empty when nothing is ranked
            for entry in entries:
                target = Path(RANKED) / str(entry.rank) / CHECKPOINT_FILE
                (staging / target.parent.name).mkdir(parents=True)
                with tune.Checkpoint(entry.checkpoint).as_directory() as source:
                    shutil.copy2(Path(source) / CHECKPOINT_FILE, staging / target.parent.name)
                entry.checkpoint = str(target)
            swap_in(staging, ranked)  # staging now holds the old ones, if any
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_ranked_model(folder: Path, entry: Entry) -> tuple[ModelFamily, dict[str, Any]]:
    """The model and the checkpoint state of a ranked entry (its checkpoint under `folder`)."""
    state = load_checkpoint(folder / entry.checkpoint)
    return model_from_state(state), state
