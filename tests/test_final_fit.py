"""The final fit: the last share of a search's time budget continues its best trial from
that trial's best checkpoint, is ranked with the rest, survives a driver crash, and the
leaderboard says where the training steps went. Real Ray (local, 127.0.0.1), real Optuna."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ray import tune

from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.ranking import best_checkpoint_result
from samplegan_tune.tuning.trainable import CONTINUES, START, START_STEP
from tests.conftest import cli, search_args, start_driver

pytestmark = pytest.mark.slow
STEPS = 8  # the smoke space's steps_per_report


def _space(tmp_path: Path) -> Path:
    space = yaml.safe_load(
        (Path(__file__).parent.parent / "search_spaces" / "smoke.yaml").read_text()
    )
    space["settings"].update(
        num_samples=2, max_concurrent=2, time_budget=70, final_share=0.6, final_trials=1
    )
    # D never comes into play: no rollout detector can stop a trial (its grace counts
    # adversarial steps), so the final fit runs until the budget ends it.
    space["fixed"]["d_warmup_steps"] = 1_000_000
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _reports(result: Path) -> list[dict]:
    return [json.loads(line) for line in result.read_text().splitlines()]


def _wait_for(pattern: str, folder: Path, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(list(folder.glob(pattern))) < count:
        time.sleep(0.5)
    assert len(list(folder.glob(pattern))) >= count, f"no {pattern} in {folder}"


def test_final_fit_continues_the_best_checkpoint_and_survives_a_driver_crash(
    env, tmp_path: Path
) -> None:
    driver = _start_search(env, tmp_path)
    exp = tmp_path / "ff"
    _wait_for("final/trial_*/checkpoint_*", exp, 3)
    _wait_for("final/experiment_state-*.json", exp, 1)
    time.sleep(2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver crashes during the final fit
    output, _ = driver.communicate(timeout=60)
    assert "[final fit] continuing trial" in output, output[-3000:]
    assert not (exp / "leaderboard.json").exists(), "the search must have been cut short"
    [final_dir] = list(exp.glob("final/trial_*"))
    before = len(_reports(final_dir / "result.json"))

    resumed = cli(env, "resume", str(exp), "--num-cpus", "2")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "[final fit] resuming" in resumed.stdout
    assert [final_dir] == list(exp.glob("final/trial_*")), "the final fit was started again"
    reports = _reports(final_dir / "result.json")
    assert len(reports) > before, "the restored final fit trained no further"
    assert [r["step"] for r in reports] == sorted({r["step"] for r in reports})

    # It continued the best search trial from that trial's best checkpoint.
    config = reports[0]["config"]
    search_trials = tune.ExperimentAnalysis(str(exp)).trials
    continued = next(t for t in search_trials if t.trial_id == config[CONTINUES])
    best = best_checkpoint_result(continued)
    assert config[START] == "/".join(Path(best.checkpoint.path).parts[-2:])
    assert config[START_STEP] == best.metrics["step"]
    assert reports[0]["step"] == config[START_STEP] + STEPS

    # Ranked with the rest, named as the final fit, and the budget split says where it went.
    board = json.loads((exp / "leaderboard.json").read_text())
    finals = [e for e in board["entries"] if e["continues"]]
    assert finals and finals[0]["continues"] == continued.trial_id
    assert board["budget"]["final fit"] == reports[-1]["step"] - config[START_STEP]
    assert board["budget"]["final fit"] > max(t.last_result["step"] for t in search_trials)
    assert "Budget:" in (exp / "leaderboard.md").read_text() and "final fit" in resumed.stdout
    assert Experiment.load(exp).settings.final_share == 0.6
    again = cli(env, "resume", str(exp))
    assert again.returncode == 2 and "nothing to resume" in again.stderr


def _start_search(env: dict[str, str], tmp_path: Path) -> subprocess.Popen:
    """The search `ff` in its own process group, as a terminal runs it."""
    return start_driver(env, *search_args(_space(tmp_path), tmp_path, "ff"))
