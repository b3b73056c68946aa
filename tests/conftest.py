"""Shared tiny configurations: short windows, few channels, so every test runs in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from samplegan_tune.core.config import TrainConfig

TINY = dict(
    segment=64,
    context=256,
    crossfade=16,
    latent=16,
    ae_channels=4,
    ae_depth=2,
    noise_dim=4,
    g_channels=16,
    g_depth=2,
    d_channels=4,
    d_depth=2,
    batch_size=4,
    rollout_steps=2,
    d_warmup_steps=2,
)


@pytest.fixture
def tiny() -> TrainConfig:
    return TrainConfig.from_dict(TINY)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI subprocess: a private corpus cache and Ray temp folder."""
    # Ray's socket paths must stay short: its temp folder goes under /tmp, not tmp_path.
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield {**os.environ, "SAMPLEGAN_CACHE": str(tmp_path / "cache"), "RAY_TMPDIR": ray_tmp}
    shutil.rmtree(ray_tmp, ignore_errors=True)


def cli(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `samplegan-tune ARGS` as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "samplegan_tune.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def start_smoke_driver(env: dict[str, str], storage: Path, name: str) -> subprocess.Popen:
    """A 4-trial smoke search, one trial at a time, in its own process group (as a terminal
    runs it)."""
    args = [
        sys.executable,
        "-m",
        "samplegan_tune.cli",
        "search",
        "--space",
        "smoke",
        "--num-samples",
        "4",
        "--max-concurrent",
        "1",
        "--num-cpus",
        "2",
        "--storage",
        str(storage),
        "--name",
        name,
    ]
    return subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_checkpoints(experiment: Path, count: int, timeout: float = 300) -> None:
    """Until the search in `experiment` has saved `count` trial checkpoints."""
    deadline = time.monotonic() + timeout
    while (
        time.monotonic() < deadline and len(list(experiment.glob("trial_*/checkpoint_*"))) < count
    ):
        time.sleep(0.5)
