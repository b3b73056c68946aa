"""Every packaged space, and a user's space with every parameter form, searched for real
(local Ray on 127.0.0.1, Optuna) at smoke size on a machine without a GPU; Ctrl-C."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import soundfile
import yaml

from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.ranking import load_trials
from samplegan_tune.tuning.space import builtin_spaces
from tests.conftest import cli, search_args, start_smoke_driver, wait_for_checkpoints

pytestmark = pytest.mark.slow
EVERY_FORM = {
    "description": "every parameter form",
    "settings": {"num_samples": 2, "gpus_per_trial": 0.5},  # asks a GPU this machine lacks
    "fixed": {"d_kind": "single"},
    "params": {
        "segment": {"int_log": [64, 128]},
        "context": {"times": "segment", "int": [2, 4]},
        "crossfade": {"choice": [0, 16]},
        "g_depth": {"int": [2, 3]},
        "lr_g": {"loguniform": [1e-4, 1e-3]},
        "lambda_fm": {"uniform": [0.0, 2.0]},
        "adv_loss": {"choice": ["hinge", "wgan-gp"]},
        "lambda_gp": {"uniform": [1.0, 10.0], "when": {"adv_loss": "wgan-gp"}},
    },
}


def assert_every_trial_trained(exp: Path, expected: int) -> None:
    """Each trial trained and its reports carry finite quality metrics; none was refused."""
    results = sorted(exp.glob("trial_*/result.json"))
    assert len(results) == expected
    for path in results:
        reports = [json.loads(line) for line in path.read_text().splitlines()]
        assert reports and reports[-1]["step"] > 0, path
        assert all(r["collapse/reason"] not in ("invalid_config", "out_of_memory") for r in reports)
        quality = [v for r in reports for k, v in r.items() if k.startswith("quality/")]
        assert quality and all(math.isfinite(v) for v in quality), path
    trials = Experiment.load(exp).study().trials
    assert len(trials) == expected
    assert all(t.user_attrs.get("outcome") not in ("invalid_config", "error") for t in trials)


@pytest.mark.parametrize("space", sorted(builtin_spaces()))
def test_every_packaged_space_trains(env, tmp_path: Path, space: str) -> None:
    result = cli(env, *search_args(space, tmp_path, space, "--smoke", "--num-samples", "2"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "[search] 2/2 done" in result.stdout
    assert_every_trial_trained(tmp_path / space, 2)
    assert f"tensorboard --logdir {tmp_path / space}" in result.stdout
    assert list((tmp_path / space).glob("trial_*/events.out.tfevents.*")), "event files"
    assert "Tuner.restore" not in result.stdout + result.stderr


def test_user_space_with_every_form_never_waits_for_a_missing_gpu(env, tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(EVERY_FORM, sort_keys=False))  # params keep their order
    started = time.monotonic()
    result = cli(env, *search_args(path, tmp_path, "mine", "--smoke"), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "--gpus-per-trial 0" in result.stdout and time.monotonic() - started < 600
    assert_every_trial_trained(tmp_path / "mine", 2)
    names = {name for t in Experiment.load(tmp_path / "mine").study().trials for name in t.params}
    assert {"context_per_segment", "segment"} <= names and not any("/" in n for n in names)
    started = [line for line in result.stdout.splitlines() if " started: " in line]
    assert len(started) == 2  # a conditional param is shown only where its condition holds
    assert all(("lambda_gp=" in line) == ("adv_loss=wgan-gp" in line) for line in started)

    asked = cli(env, *search_args("smoke", tmp_path, "gpu", "--gpus-per-trial", "1"))
    assert asked.returncode == 2 and "--gpus-per-trial 0" in asked.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "gpu").exists()


def test_ctrl_c_says_how_to_resume(env, tmp_path: Path) -> None:
    driver = start_smoke_driver(env, tmp_path, "cut")
    exp = tmp_path / "cut"
    wait_for_checkpoints(exp, 1)
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 130, output[-3000:]
    assert f"samplegan-tune resume {exp}" in output and "Tuner.restore" not in output
    assert "collapsed or failed" not in output
    resumed = cli(env, "resume", str(exp), "--num-cpus", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = Experiment.load(exp).study().trials
    assert len(trials) == 4 and all(t.state != optuna.trial.TrialState.RUNNING for t in trials)


def test_trials_cut_by_the_time_budget_are_not_lost(env, tmp_path: Path) -> None:
    long = yaml.safe_load(
        (Path(__file__).parent.parent / "search_spaces" / "smoke.yaml").read_text()
    )
    # Far too long for the budget, and no rollout detector may stop it before: grace period.
    # The space's own time_budget (no --time-budget flag) ends the search.
    long["settings"].update(
        num_samples=2, max_reports=200, grace_period=200, max_concurrent=1, time_budget=40
    )
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(long, sort_keys=False))  # params keep their order
    result = cli(env, *search_args(path, tmp_path, "budget"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "ranked after 40 s at most" in result.stdout
    trials = Experiment.load(tmp_path / "budget").study().trials
    outcomes = [t.user_attrs.get("outcome") for t in trials]
    assert "lost" not in outcomes and "stopped_by_budget" in outcomes, outcomes
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    # the summaries (leaderboard notes, listening page) say what the study says
    _, summaries = load_trials(Experiment.load(tmp_path / "budget"))
    assert "stopped_by_budget" in [s.outcome for s in summaries]


def test_latent_family_searches_ranks_exports_and_generates(env, tmp_path: Path) -> None:
    """The latent family goes the whole user path the segment family does."""
    space = {
        "description": "latent only",
        "settings": {"num_samples": 2},
        "fixed": {"model_family": "latent", "ae_pretrain_steps": 3, "d_kind": "single"},
        "params": {"frame_latent": {"choice": [4, 8]}, "lr_g": {"loguniform": [1e-4, 1e-3]}},
    }
    path = tmp_path / "latent.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    result = cli(env, *search_args(path, tmp_path, "latent", "--smoke"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert_every_trial_trained(tmp_path / "latent", 2)
    exported = tmp_path / "model"
    done = cli(env, "export", str(tmp_path / "latent"), "--rank", "1", "--out", str(exported))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((exported / "config.json").read_text())["model_family"] == "latent"
    wav = tmp_path / "out.wav"
    made = cli(env, "generate", str(exported), "--seconds", "1", "--out", str(wav))
    assert made.returncode == 0, made.stderr[-3000:]
    audio, rate = soundfile.read(wav)
    assert len(audio) == rate and np.isfinite(audio).all() and np.sqrt(np.mean(audio**2)) > 1e-3
