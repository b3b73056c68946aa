"""Real searches on a local Ray (2 CPUs, loopback): collapse pruning, Optuna states,
leaderboard, export + generate, the listening page in Chromium, and interrupt + resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import soundfile as sf
import yaml

from samplegan_tune.judge.collapse import ROLLOUT_REASONS, TRAINING_REASONS
from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.space import resolve_space
from tests.conftest import (
    chromium,
    cli,
    search_args,
    start_smoke_driver,
    wait_for_checkpoints,
)

pytestmark = pytest.mark.slow


def study(folder: Path) -> optuna.Study:
    return Experiment.load(folder).study()


def test_smoke_search_prunes_collapse_ranks_exports(env, tmp_path: Path) -> None:
    storage = tmp_path / "results"
    # A --try point must lie inside the space: the learning rates widened to hold one that
    # collapses (a point off the range is refused, tests/test_search_cli.py).
    smoke = resolve_space("smoke").read_text()
    assert smoke.count("loguniform: [1.0e-4, 3.0e-3]") == 2
    space = tmp_path / "smoke.yaml"
    space.write_text(smoke.replace("loguniform: [1.0e-4, 3.0e-3]", "loguniform: [1.0e-4, 10]"))
    result = cli(
        env,
        "search",
        "--space",
        str(space),
        "--num-samples",
        "4",
        "--num-cpus",
        "2",
        "--storage",
        str(storage),
        "--name",
        "smoke",
        "--try",
        "lr_g=10,lr_d=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[search] 4/4 done" in result.stdout
    exp = storage / "smoke"
    trials = study(exp).trials
    assert len(trials) == 4
    baseline = min(trials, key=lambda t: t.number)  # the space's defaults come first
    assert baseline.params == Experiment.load(exp).space.baseline()
    forced = next(t for t in trials if t.params.get("lr_g") == 10)
    assert forced.state in (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    assert forced.user_attrs["outcome"] in (*TRAINING_REASONS, *ROLLOUT_REASONS)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    rows = _check_leaderboard(exp, result.stdout)
    _check_export_and_generate(env, exp, rows, tmp_path)
    _check_export_force_replaces_only_an_export(env, exp, tmp_path / "model", tmp_path)
    _check_a_lost_or_broken_study_is_refused(env, exp)
    beyond = cli(
        env, "export", str(exp), "--rank", str(len(rows) + 1), "--out", str(tmp_path / "x")
    )
    assert beyond.returncode == 2 and "--rank" in beyond.stderr
    nowhere = cli(env, "export", str(exp), "--out", "/proc/samplegan-nope/model")
    assert nowhere.returncode == 2 and "/proc/samplegan-nope/model" in nowhere.stderr
    _check_page_renders(exp / "listening" / "index.html", tmp_path)


def _check_leaderboard(exp: Path, stdout: str) -> list[dict[str, str]]:
    """The leaderboard's rows: ranked in order, with a usable scale and sampled params."""
    with open(exp / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Ranked survivors, or (tiny models rarely pass the detectors) the best attempts, each
    # labelled with the failure it shows: never an unlabelled collapsed model.
    assert rows, "the leaderboard lists the survivors or the flagged best attempts"
    assert all(not r["flagged"] for r in rows) or "best attempts" in stdout
    scale = {k: float(v) for k, v in rows[0].items() if k.startswith("scale: ")}
    assert scale["scale: real continuation"] < scale["scale: looped segment"]  # a usable scale
    assert "| reference | quality/score | position |" in (exp / "leaderboard.md").read_text()
    finals = [float(r["final score"].split()[0]) for r in rows]
    tie = Experiment.load(exp).settings.rank_tie  # a later rank never clearly better
    assert all(a <= b * (1 + tie) for i, a in enumerate(finals) for b in finals[i:]), finals
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert str(exp / "listening" / "index.html") in stdout
    assert sum(r["trial"].endswith("(baseline)") for r in rows) <= 1
    for row in rows:  # the params a trial sampled: the latent family's knobs only with it
        params = json.loads(row["params"])
        assert ("ae_pretrain_steps" in params) == (params["model_family"] == "latent"), params
    return rows


def _check_export_and_generate(
    env: dict[str, str], exp: Path, rows: list[dict[str, str]], tmp_path: Path
) -> None:
    exported = tmp_path / "model"
    done = cli(env, "export", str(exp), "--rank", "1", "--out", str(exported))
    assert done.returncode == 0 and ("warning" in done.stdout) == bool(rows[0]["flagged"])
    wav = tmp_path / "out.wav"
    made = cli(env, "generate", str(exported), "--seconds", "2", "--out", str(wav))
    assert made.returncode == 0, made.stderr
    audio, rate = sf.read(wav)
    assert rate == 16000 and len(audio) == 32000 and abs(audio).max() > 0


def _check_export_force_replaces_only_an_export(
    env: dict[str, str], exp: Path, exported: Path, tmp_path: Path
) -> None:
    """`--force` replaces an earlier export, never the experiment, its parent or a folder of
    other files (each refused in one line, exit 2, everything left as it was)."""
    before = sorted(p.relative_to(exp) for p in exp.rglob("*"))
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("four years of work")
    refusals = {
        exp: "is the experiment",
        exp.parent: "holds the experiment",
        foreign: "not an earlier export",
    }
    for out, words in refusals.items():
        done = cli(env, "export", str(exp), "--rank", "1", "--out", str(out), "--force")
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert sorted(p.relative_to(exp) for p in exp.rglob("*")) == before
    assert (foreign / "thesis.txt").read_text() == "four years of work"
    _check_a_kill_at_the_swap_keeps_the_earlier_export(env, exp, exported)
    old = json.loads((exported / "manifest.json").read_text())["created"]
    time.sleep(1.1)  # `created` has a resolution of seconds
    again = cli(env, "export", str(exp), "--rank", "1", "--out", str(exported), "--force")
    assert again.returncode == 0, again.stderr
    assert json.loads((exported / "manifest.json").read_text())["created"] != old
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".model.")]


def _check_a_kill_at_the_swap_keeps_the_earlier_export(
    env: dict[str, str], exp: Path, exported: Path
) -> None:
    """`export --force` killed as it swaps the new export in (strace delivers SIGKILL on the
    renameat2 call) leaves the earlier export whole: before, a kill between its two renames
    left neither. (Where strace is missing or cannot trace, not checked.)"""
    strace = shutil.which("strace")
    if strace is None or subprocess.run([strace, "-qq", "true"], capture_output=True).returncode:
        return  # no strace, or no ptrace here
    before = {p.name: p.read_bytes() for p in exported.iterdir()}
    export = ["export", str(exp), "--rank", "1", "--out", str(exported), "--force"]
    inject = ["-f", "-qq", "-e", "trace=renameat2", "-e", "inject=renameat2:signal=SIGKILL"]
    killed = subprocess.run(
        [strace, *inject, sys.executable, "-m", "samplegan_tune.cli", *export],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    # strace ends as its tracee did: killed by the same signal, or exit 128 + its number.
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), killed.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in exported.iterdir()} == before


def _check_a_lost_or_broken_study_is_refused(env: dict[str, str], exp: Path) -> None:
    """Without its optuna.db, or with a truncated one, `leaderboard` and `resume` stop in one
    line (exit 2) and create no empty study (they gave tracebacks, and made one)."""
    study_file = exp / "optuna.db"
    saved = study_file.read_bytes()
    study_file.unlink()
    for command, words in (("leaderboard", "study is missing"), ("resume", "study is missing")):
        done = cli(env, command, str(exp))
        assert done.returncode == 2 and words in done.stderr, done.stderr[-2000:]
        assert len(done.stderr.strip().splitlines()) == 1 and not study_file.exists()
    study_file.write_bytes(saved[: len(saved) // 3])
    done = cli(env, "leaderboard", str(exp))
    assert done.returncode == 2 and "not a readable Optuna study" in done.stderr
    study_file.write_bytes(saved)


def _check_page_renders(page: Path, tmp_path: Path) -> None:
    text = page.read_text()
    assert "<audio" in text and "How trials ended" in text and "importance" in text
    dom = chromium(page, tmp_path, "--dump-dom")
    assert "Top trials" in dom and "<svg" in dom
    shot = tmp_path / "page.png"
    chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000")
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_interrupted_search_resumes_to_exactly_num_samples(env, tmp_path: Path) -> None:
    storage = tmp_path / "results"
    driver = start_smoke_driver(env, storage, "cut")
    exp = storage / "cut"
    wait_for_checkpoints(exp, 2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver crashes, taking its local Ray along
    driver.wait(timeout=60)
    assert not (exp / "leaderboard.json").exists(), "the search must have been cut short"
    partial = cli(env, "leaderboard", str(exp))  # it ranked with no sign the search was cut
    assert "search was interrupted" in partial.stdout and f"resume {exp}" in partial.stdout, (
        partial.stdout
    )

    result = cli(env, "resume", str(exp), "--num-cpus", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "search was interrupted" not in cli(env, "leaderboard", str(exp)).stdout
    from ray import tune

    tune_trials = tune.ExperimentAnalysis(str(exp)).trials
    assert len(tune_trials) == 4
    assert all(t.status == "TERMINATED" for t in tune_trials), [t.status for t in tune_trials]
    trials = study(exp).trials
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    # Each Tune trial reached Optuna exactly once; a suggestion the crash orphaned (asked
    # after the searcher's last saved state) is closed, never left RUNNING (asserted above).
    ids = [t.user_attrs.get("tune_trial_id") for t in trials]
    assert sorted(i for i in ids if i in {t.trial_id for t in tune_trials}) == sorted(
        t.trial_id for t in tune_trials
    )
    again = cli(env, "resume", str(exp))
    assert again.returncode == 2 and "nothing to resume" in again.stderr


def test_bad_search_inputs_leave_no_experiment(env, tmp_path: Path) -> None:
    storage = tmp_path / "results"
    cases = [
        (["--space", "nope"], "smoke"),
        (["--space", "smoke", "--num-samples", "0"], "--num-samples"),
        (["--space", "smoke", "--address", "127.0.0.1:1"], "--address"),
    ]
    for extra, word in cases:
        result = cli(env, "search", *extra, "--storage", str(storage), "--name", "bad")
        assert result.returncode == 2, result.stderr[-2000:]
        assert word in result.stderr.strip().splitlines()[-1]
        assert not (storage / "bad").exists()
    for name in ("x/../../y", "../escape", ".hidden", "a b"):  # a name is one folder in storage
        result = cli(env, "search", "--space", "smoke", "--storage", str(storage), "--name", name)
        assert result.returncode == 2 and "--name" in result.stderr.strip().splitlines()[-1]
    for budget in ("nan", "inf", "-1"):  # NaN and Infinity were written into search.json
        result = cli(
            env,
            "search",
            "--space",
            "smoke",
            "--time-budget",
            budget,
            "--storage",
            str(storage),
            "--name",
            "bad",
        )
        assert result.returncode == 2 and "--time-budget" in result.stderr
    assert not storage.exists() or not any(storage.iterdir())
    assert not (tmp_path / "y").exists() and not (tmp_path / "escape").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli(env, "search", "--space", "smoke", "--storage", str(blocker / "r"))
    assert result.returncode == 2 and str(blocker) in result.stderr
    for command in (["resume"], ["leaderboard"], ["export", "--out", str(tmp_path / "o")]):
        result = cli(env, command[0], str(tmp_path), *command[1:])
        assert result.returncode == 2 and "not an experiment" in result.stderr


@pytest.mark.slow
def test_a_trial_still_in_stage_one_is_never_ranked_nor_exported(env, tmp_path: Path) -> None:
    """A latent trial whose stage 1 (100 steps) outlasts the search (3 reports of 8 steps):
    its generator never trained, so it is no candidate, not even a flagged best attempt."""
    packaged = Path(__file__).resolve().parents[1] / "samplegan_tune" / "search_spaces"
    smoke = yaml.safe_load((packaged / "smoke.yaml").read_text())
    smoke["fixed"].update(model_family="latent", ae_pretrain_steps=100)
    smoke["params"] = {"lr_g": smoke["params"]["lr_g"]}
    space = tmp_path / "stage1.yaml"
    space.write_text(yaml.safe_dump(smoke))
    storage = tmp_path / "results"
    done = cli(env, *search_args(space, storage, "stage1", "--num-samples", "1"))
    assert done.returncode == 0, done.stderr[-3000:]
    exp = storage / "stage1"
    (trial,) = study(exp).trials
    assert trial.state == optuna.trial.TrialState.PRUNED  # no healthy report to tell
    board = json.loads((exp / "leaderboard.json").read_text())
    assert board["entries"] == []
    out = tmp_path / "model"
    refused = cli(env, "export", str(exp), "--rank", "1", "--out", str(out))
    assert refused.returncode == 2 and "no ranked survivors" in refused.stderr
    assert not out.exists()
