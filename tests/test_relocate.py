"""Experiment folders are self-contained: copied or moved, a search resumes, ranks and exports
where the folder is now and writes only there (issue 20, point 4)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from samplegan_tune.judge.collapse import REASON_METRIC
from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning.experiment import DESCRIPTION_FILE, STUDY_FILE, Experiment
from samplegan_tune.tuning.search import OutcomeAwareOptunaSearch
from samplegan_tune.tuning.space import resolve_space
from samplegan_tune.tuning.trial import REPORTS
from tests.conftest import (
    cli,
    search_args,
    smoke_experiment,
    start_driver,
    wait_for_checkpoints,
)


def _state(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under `folder`: (mtime, SHA-256)."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_search_json_names_no_path_and_an_old_one_reads_as_relative(tmp_path: Path) -> None:
    exp = smoke_experiment(tmp_path / "results" / "e")
    exp.save()
    text = (exp.folder / DESCRIPTION_FILE).read_text()
    assert str(tmp_path) not in text
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    exp.folder.rename(moved)
    again = Experiment.load(moved)
    assert again.tune_path == str(moved.resolve())
    assert again.tune_storage_path == str(moved.parent.resolve())
    assert again.optuna_storage().url.endswith(f"{moved.resolve() / STUDY_FILE}")
    # Written before folders were relocatable: both paths absolute, Tune's the folder's parent.
    old = json.loads(text)
    old.update(folder=str(tmp_path / "results" / "e"), tune_storage=str(tmp_path / "results"))
    (moved / DESCRIPTION_FILE).write_text(json.dumps(old))
    assert Experiment.load(moved).tune_path == str(moved.resolve())
    remote = {**old, "folder": "results/e", "tune_storage": "s3://bucket/runs"}
    (moved / DESCRIPTION_FILE).write_text(json.dumps(remote))
    assert Experiment.load(moved).tune_path == "s3://bucket/runs/e"


def test_a_restored_searcher_tells_the_study_it_is_bound_to_now(tmp_path: Path) -> None:
    """Tune saves the searcher twice (tuner.pkl, its searcher state); neither may name the
    study's file, or a copied experiment's resume tells the original's study."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{original / STUDY_FILE}")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    searcher = OutcomeAwareOptunaSearch(
        space=space, metric=SCORE, mode="min", storage=storage, study_name="s", max_reports=2
    )
    searcher.suggest("t1")
    searcher.save(str(original / "searcher-state.pkl"))
    tuner_pkl = pickle.dumps(searcher)
    assert str(original).encode() not in tuner_pkl
    assert str(original).encode() not in (original / "searcher-state.pkl").read_bytes()
    shutil.copytree(original, copy)
    before = _state(original)

    restored = pickle.loads(tuner_pkl)
    restored.use_study(optuna.storages.RDBStorage(f"sqlite:///{copy / STUDY_FILE}"))
    restored.restore(str(copy / "searcher-state.pkl"))
    last = {SCORE: 2.0, "training_iteration": 2, REPORTS: 2, REASON_METRIC: ""}
    restored.on_trial_result("t1", {SCORE: 3.0, "training_iteration": 1})
    restored.on_trial_complete("t1", last)

    assert _state(original) == before
    (told,) = optuna.load_study(study_name="s", storage=f"sqlite:///{copy / STUDY_FILE}").trials
    assert told.state == TrialState.COMPLETE and told.value == 2.0
    (left,) = optuna.load_study(study_name="s", storage=f"sqlite:///{original / STUDY_FILE}").trials
    assert left.state == TrialState.RUNNING


def _start_driver(env: dict[str, str], tmp_path: Path) -> subprocess.Popen:
    """A 4-trial search of smoke, one trial at a time, ranking as little as it can (ranking
    dominates the test's time): its driver, in its own process group."""
    space = yaml.safe_load(resolve_space("smoke").read_text())
    space["settings"].update(eval_rollouts=2, top_k=1, rank_rollouts=2, rank_seeds=1)
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))  # a param's `when` comes after
    more = ("--num-samples", "4", "--max-concurrent", "1")
    return start_driver(env, *search_args(path, tmp_path / "results", "cut", *more), quiet=True)


@pytest.mark.slow
def test_a_copied_experiment_resumes_into_the_copy_then_ranks_and_exports_moved(
    env, tmp_path: Path
) -> None:
    driver = _start_driver(env, tmp_path)
    original = tmp_path / "results" / "cut"
    wait_for_checkpoints(original, 2)
    assert driver.poll() is None, "the search ended before it could be cut short"
    os.killpg(driver.pid, signal.SIGKILL)  # cut short: trials left to run, some not made yet
    driver.wait(timeout=60)
    copy = tmp_path / "copies" / "cut"
    copy.parent.mkdir()
    shutil.copytree(original, copy, symlinks=True, copy_function=shutil.copy2)  # cp -a
    before = _state(original)

    resumed = cli(env, "resume", str(copy), "--num-cpus", "2", timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _state(original) == before, "resuming the copy wrote into the original"
    from ray import tune

    trials = tune.ExperimentAnalysis(str(copy)).trials
    assert len(trials) == 4 and all(t.status == "TERMINATED" for t in trials)
    assert all(Path(t.path).parent == copy.resolve() for t in trials)
    study = Experiment.load(copy).study()
    assert len(study.trials) >= 4 and all(t.state != TrialState.RUNNING for t in study.trials)
    assert (copy / "leaderboard.json").is_file()

    moved = tmp_path / "moved" / "renamed"
    moved.parent.mkdir()
    copy.rename(moved)
    ranked = cli(env, "leaderboard", str(moved), timeout=900)
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    out = tmp_path / "model"
    exported = cli(env, "export", str(moved), "--rank", "1", "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (out / "model.safetensors").is_file()
    assert not copy.exists() and _state(original) == before
