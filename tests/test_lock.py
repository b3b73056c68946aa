"""One driver per experiment: a live holder (another process) refuses a second driver,
naming it; a dead one's lock is taken over; one on another machine is refused; the lock
goes however its holder's block ends. And with real commands: a second `search`, `resume`
or `leaderboard` on a running search is refused, and the first finishes intact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.lock import LOCK_FILE, driver_lock, holder
from samplegan_tune.tuning.experiment import Experiment
from tests.conftest import cli, start_smoke_driver

HOLD = (
    "import sys, time; from samplegan_tune.core.lock import driver_lock as d\n"
    "with d(sys.argv[1], 'search'):\n    print('held', flush=True); time.sleep(600)"
)


def _holding_child(folder: Path) -> subprocess.Popen:
    """Another process holding `folder`'s lock, once it has said so."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_live_holder_is_named_and_a_dead_ones_lock_taken_over(tmp_path: Path) -> None:
    child = _holding_child(tmp_path)
    try:
        with (
            pytest.raises(UserInputError, match=f"pid {child.pid} on host "),
            driver_lock(tmp_path, "resume"),
        ):
            pass
        assert f"search, pid {child.pid} on host {socket.gethostname()}" in holder(tmp_path)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no clean-up runs: its lock file stays behind
        child.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == child.pid
    assert holder(tmp_path) is None  # stale: the kernel dropped the dead process's flock
    with driver_lock(tmp_path, "leaderboard"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_from_another_machine_is_refused_until_deleted(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    lock.write_text(json.dumps({"pid": 4242, "host": "node-7", "command": "search"}))
    refused = pytest.raises(UserInputError, match=f"pid 4242 on host node-7.*delete {lock}")
    with refused, driver_lock(tmp_path, "resume"):
        pass
    assert json.loads(lock.read_text())["host"] == "node-7"  # left for its owner
    lock.unlink()
    with driver_lock(tmp_path, "resume"):
        pass


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), driver_lock(tmp_path, "search"):
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK_FILE).exists()
    with driver_lock(tmp_path, "search"):
        pass


@pytest.mark.slow
def test_a_second_driver_is_refused_while_a_search_runs(env, tmp_path: Path) -> None:
    storage = tmp_path / "results"
    exp = storage / "x"
    first = start_smoke_driver(env, storage, "x")
    deadline = time.monotonic() + 120
    while holder(exp) is None and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    running = f"pid {first.pid} on host {socket.gethostname()}"
    assert running in (holder(exp) or ""), first.stdout.read() if first.poll() else "no lock"
    second = cli(env, "search", "--space", "smoke", "--storage", str(storage), "--name", "x")
    refusals = [
        (second, ["an experiment of that name exists", running]),
        (cli(env, "resume", str(exp)), ["another driver holds this experiment", running]),
        (cli(env, "leaderboard", str(exp)), ["another driver holds this experiment", running]),
    ]
    for done, words in refusals:
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and all(w in lines[0] for w in words), done.stderr[-2000:]
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    assert "[search] 4/4 done" in output and (exp / "leaderboard.json").is_file()
    trials = Experiment.load(exp).study().trials
    assert len(trials) == 4
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    assert all(t.user_attrs.get("outcome") != "lost" for t in trials)
    assert not (exp / LOCK_FILE).exists()
