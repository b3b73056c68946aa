"""The search trial's work without Ray: reports, collapse with a named reason, resume."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import torch
from optuna.samplers._tpe.sampler import _split_trials  # how TPE splits good from bad

from samplegan_tune.audio.corpus import Corpus, split_corpus
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.judge.collapse import (
    REASON_METRIC,
    ROLLOUT_REASONS,
    SILENCE,
    TRAINING_REASONS,
    CollapseConfig,
    CollapseMonitor,
)
from samplegan_tune.judge.metrics import SCORE, RealReference
from samplegan_tune.tuning.outcomes import (
    COLLAPSE_CONSTRAINT,
    STOPPED_EARLY,
    collapse_violation,
    trial_outcome,
)
from samplegan_tune.tuning.search import OutcomeAwareOptunaSearch
from samplegan_tune.tuning.space import SearchSettings
from samplegan_tune.tuning.trial import (
    ADVERSARIAL_STEPS,
    COLLAPSED_SCORE,
    FLAGGED,
    GENERATOR_STEPS,
    REPORTS,
    UNTRAINED,
    Trial,
    TrialData,
    reference_clips,
)

SETTINGS = SearchSettings(
    max_reports=2,
    steps_per_report=3,
    grace_period=2,
    eval_rollouts=4,
    eval_seconds=0.5,
    rank_rollouts=4,
)


@pytest.fixture(scope="module")
def data() -> TrialData:
    corpus = Corpus.from_items(synthetic_songs(seconds=60.0, sample_rate=16000, seed=3), 16000)
    train, heldout = split_corpus(corpus, 0.3)
    primers, clips = reference_clips(heldout, SETTINGS, 16000)
    reference = RealReference.from_clips(clips, 16000, primers=primers)
    return TrialData(train, heldout, reference, "synthetic")


def test_reports_carry_losses_quality_and_no_reason(tiny: TrainConfig, data: TrialData) -> None:
    trial = Trial(tiny, data, SETTINGS)
    report = trial.run_interval()
    assert report[REASON_METRIC] == "" and report["reports"] == 1 and report["step"] == 3
    # A 3-step model may already be judged a failure: then its report is flagged, not scored.
    assert (0 < report[SCORE] < COLLAPSED_SCORE) != bool(report[FLAGGED])
    assert "loss/recon_l1" in report and "quality/spectral_change" in report
    assert report["time/train_s"] > 0 and not trial.finished
    trial.run_interval()
    assert trial.finished


def test_divergence_is_stopped_with_a_named_reason(tiny: TrainConfig, data: TrialData) -> None:
    settings = SearchSettings(**{**SETTINGS.__dict__, "steps_per_report": 10})
    trial = Trial(tiny.replace(lr_g=1000.0, lr_d=1000.0, lr_ae=1000.0), data, settings)
    report = trial.run_interval()
    assert report["step"] < 10, "the interval must end at the collapse, not run on"
    assert report[REASON_METRIC] in TRAINING_REASONS
    assert report[SCORE] == COLLAPSED_SCORE


def test_state_round_trip_continues_the_count(tiny: TrainConfig, data: TrialData) -> None:
    first = Trial(tiny, data, SETTINGS)
    first.run_interval()
    state = copy.deepcopy(first.state_dict())  # state_dict() shares storage with the live run
    a = first.run_interval()  # before `second` exists: both draw on torch's global RNG
    second = Trial(tiny, data, SETTINGS)
    second.load_state_dict(state)
    assert second.reports == 1 and second.trainer.step_count == 3
    b = second.run_interval()
    assert a["loss/g_total"] == b["loss/g_total"]
    assert torch.isfinite(torch.tensor(a[SCORE]))


def test_trial_outcomes_reach_optuna_honestly() -> None:
    from optuna.trial import TrialState

    full = {SCORE: 3.0, "reports": 5, REASON_METRIC: ""}
    assert trial_outcome(full, False, 5) == (TrialState.COMPLETE, 3.0, "completed")
    cut = {**full, "reports": 2}
    assert trial_outcome(cut, False, 5) == (TrialState.PRUNED, None, STOPPED_EARLY)
    dead = {SCORE: COLLAPSED_SCORE, "reports": 1, REASON_METRIC: "silence"}
    assert trial_outcome(dead, False, 5) == (TrialState.PRUNED, None, "silence")
    assert trial_outcome({}, True, 5)[0] == TrialState.FAIL
    assert trial_outcome({SCORE: float("nan"), "reports": 5}, False, 5)[0] == TrialState.PRUNED


def test_a_trial_that_only_ever_sounded_collapsed_is_told_so() -> None:
    """A detector that only flags leaves ASHA or the budget to end the trial: when no report
    was healthy, the sampler still hears which collapse it ended in (item 5 of issue 17)."""
    from optuna.trial import TrialState

    flagged = {SCORE: COLLAPSED_SCORE, REPORTS: 2, REASON_METRIC: "", FLAGGED: "static"}
    assert trial_outcome(flagged, False, 5) == (TrialState.PRUNED, None, "static")
    assert collapse_violation(flagged, False, 5) == 0.8  # (5 - 2 + 1) / 5
    # It had a healthy report before: cut early, with a score the sampler can rank.
    assert trial_outcome(flagged, False, 5, best=3.0) == (TrialState.PRUNED, None, STOPPED_EARLY)
    assert collapse_violation(flagged, False, 5, best=3.0) == 0.0
    # Still in stage 1 (no generator yet): nothing to say about collapse.
    untrained = {**flagged, FLAGGED: UNTRAINED}
    assert trial_outcome(untrained, False, 5) == (TrialState.PRUNED, None, "no_score")
    assert collapse_violation(untrained, False, 5) == 0.0


def test_resumed_searcher_keeps_an_outcome_told_before_the_crash(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}

    def searcher() -> OutcomeAwareOptunaSearch:
        return OutcomeAwareOptunaSearch(
            space=space, metric=SCORE, mode="min", storage=storage, study_name="s", max_reports=2
        )

    before_crash = searcher()
    before_crash.suggest("t1")
    before_crash.save(str(tmp_path / "searcher.pkl"))  # the driver's last saved state
    before_crash.on_trial_complete("t1", {SCORE: 1.0, REPORTS: 2, REASON_METRIC: ""})

    resumed = searcher()
    resumed.restore(str(tmp_path / "searcher.pkl"))  # t1 looks unfinished here
    resumed.on_trial_result("t1", {SCORE: 0.5, "training_iteration": 3})
    resumed.on_trial_complete("t1", {SCORE: 0.5, REPORTS: 2, REASON_METRIC: ""})
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 1.0


def test_the_sampler_counts_every_collapsed_trial_among_the_bad(tmp_path: Path) -> None:
    """c-TPE: a collapsed trial carries a violated constraint (the earlier, the larger), so
    TPE puts it with the bad trials; without it, a collapsed trial (PRUNED, no intermediate
    value) ranked like a trial ASHA stopped, and before it by trial number."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    searcher = OutcomeAwareOptunaSearch(
        space=space, metric=SCORE, mode="min", storage=storage, study_name="s", max_reports=4
    )
    for tune_id in ("healthy", "collapsed", "late", "cut"):
        searcher.suggest(tune_id)
    searcher.on_trial_complete("healthy", {SCORE: 1.0, REPORTS: 4, REASON_METRIC: ""})
    dead = {SCORE: COLLAPSED_SCORE, REASON_METRIC: "static"}
    searcher.on_trial_complete("collapsed", {**dead, REPORTS: 1})
    searcher.on_trial_complete("late", {**dead, REPORTS: 4})
    searcher.on_trial_complete("cut", {SCORE: 2.0, REPORTS: 2, REASON_METRIC: ""})
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.constraints[COLLAPSE_CONSTRAINT] for t in study.trials] == [0.0, 1.0, 0.25, 0.0]
    below, above = _split_trials(study, study.trials, n_below=2)
    assert [t.number for t in below] == [0, 3] and [t.number for t in above] == [1, 2]


def test_a_report_before_the_grace_period_is_judged_all_the_same(
    tiny: TrainConfig, data: TrialData
) -> None:
    """A detector that fires before the grace period's adversarial steps have run flags the
    report: its checkpoint scores COLLAPSED_SCORE (never ranked), and the trial stops once
    they have run (2 reports x 3 steps = 6 adversarial steps: with no D warm-up, report 2)."""
    trial = Trial(tiny.replace(d_warmup_steps=0), data, SETTINGS)
    trial.monitor = CollapseMonitor(CollapseConfig(silence_margin_db=-200.0))  # always fires
    first = trial.run_interval()
    assert first[REASON_METRIC] == "" and first[FLAGGED] == SILENCE
    assert first[SCORE] == COLLAPSED_SCORE and first[ADVERSARIAL_STEPS] == 3
    second = trial.run_interval()
    assert second[REASON_METRIC] == SILENCE and second[FLAGGED] == ""


def test_the_grace_period_counts_adversarial_steps_not_reports(
    tiny: TrainConfig, data: TrialData
) -> None:
    """D's warm-up (4 steps) does not count: after 2 reports of 3 steps only 2 adversarial
    steps have run, so the always-firing detector still only flags; at report 4 (8 steps)
    the grace period's 6 have run and it stops the trial."""
    settings = SearchSettings(**{**SETTINGS.__dict__, "max_reports": 4})
    trial = Trial(tiny.replace(d_warmup_steps=4), data, settings)
    trial.monitor = CollapseMonitor(CollapseConfig(silence_margin_db=-200.0))
    reports = [trial.run_interval() for _ in range(3)]
    assert [r[ADVERSARIAL_STEPS] for r in reports] == [0, 2, 5]
    assert all(r[REASON_METRIC] == "" and r[FLAGGED] == SILENCE for r in reports)
    assert trial.run_interval()[REASON_METRIC] == SILENCE


def test_each_detector_stops_only_from_its_own_step(tiny: TrainConfig, data: TrialData) -> None:
    """The space's `stop_after`: a detector named with None never stops a trial (it flags
    every report), one named with a step stops from there, whatever the grace period."""
    never = dict.fromkeys(ROLLOUT_REASONS)  # every detector only flags
    settings = SearchSettings(**{**SETTINGS.__dict__, "max_reports": 3, "stop_after": never})
    trial = Trial(tiny.replace(d_warmup_steps=0), data, settings)
    trial.monitor = CollapseMonitor(CollapseConfig(silence_margin_db=-200.0))  # always fires
    reports = [trial.run_interval() for _ in range(3)]  # 9 adversarial steps, grace is 6
    assert all(r[REASON_METRIC] == "" and r[FLAGGED] == SILENCE for r in reports)
    assert all(r[SCORE] == COLLAPSED_SCORE for r in reports)
    settings = SearchSettings(**{**SETTINGS.__dict__, "stop_after": {SILENCE: 3}})
    trial = Trial(tiny.replace(d_warmup_steps=0), data, settings)
    trial.monitor = CollapseMonitor(CollapseConfig(silence_margin_db=-200.0))
    assert trial.run_interval()[REASON_METRIC] == SILENCE  # at 3 steps, before the grace's 6


def test_a_generator_still_in_stage_one_is_not_judged_nor_rankable(
    tiny: TrainConfig, data: TrialData
) -> None:
    """Latent family, 5 steps of stage 1: report 1 (step 3) has an untrained generator — no
    rollouts, no detector, flagged `untrained`, scored COLLAPSED_SCORE; report 2 (step 6) is
    the first judged one."""
    cfg = tiny.replace(model_family="latent", ae_pretrain_steps=5)
    trial = Trial(cfg, data, SETTINGS)
    first = trial.run_interval()
    assert first[FLAGGED] == UNTRAINED and first[REASON_METRIC] == ""
    assert first[SCORE] == COLLAPSED_SCORE and first[GENERATOR_STEPS] == 0
    assert trial.last_clips is None and "quality/spectral_change" not in first
    second = trial.run_interval()
    assert second[GENERATOR_STEPS] == 1 and second[FLAGGED] != UNTRAINED
    assert "quality/spectral_change" in second


def test_optuna_is_told_the_best_report_the_ranking_uses(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    searcher = OutcomeAwareOptunaSearch(
        space=space, metric=SCORE, mode="min", storage=storage, study_name="s", max_reports=3
    )
    searcher.suggest("t1")
    for i, score in enumerate([5.0, 2.0, COLLAPSED_SCORE], start=1):
        searcher.on_trial_result("t1", {SCORE: score, "training_iteration": i})
    searcher.on_trial_complete("t1", {SCORE: 4.0, REPORTS: 3, REASON_METRIC: ""})
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert trial.value == 2.0 and trial.intermediate_values == {1: 5.0, 2: 2.0}
