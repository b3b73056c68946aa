"""Shared tiny configurations: short windows, few channels, so every test runs in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from samplegan_tune.core.config import TrainConfig

if TYPE_CHECKING:
    from samplegan_tune.tuning.experiment import Experiment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # None: the page tests skip

TINY = {
    "segment": 64,
    "context": 256,
    "crossfade": 16,
    "latent": 16,
    "ae_channels": 4,
    "ae_depth": 2,
    "noise_dim": 4,
    "g_channels": 16,
    "g_depth": 2,
    "d_channels": 4,
    "d_depth": 2,
    "batch_size": 4,
    "rollout_steps": 2,
    "d_warmup_steps": 2,
}


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


def smoke_experiment(folder: Path, **fields: Any) -> Experiment:
    """The smoke space's experiment description for `folder`, not saved; `fields` override."""
    from samplegan_tune.tuning.experiment import Experiment
    from samplegan_tune.tuning.space import load_space, resolve_space

    values = dict(
        name=folder.name,
        folder=folder,
        tune_storage=str(folder.parent),
        space_name="smoke",
        space_yaml=resolve_space("smoke").read_text(),
        settings=load_space("smoke").settings,
        data=["synthetic"],
        num_samples=2,
    )
    return Experiment(**{**values, **fields})


def chromium(page: Path, tmp_path: Path, *args: str) -> str:
    """Headless Chromium's stdout for `page` with ARGS; skips the test where it is missing."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed here (CI installs it from Debian)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ]
    command = [CHROMIUM, *flags, *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=120)
    return done.stdout


def cli(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `samplegan-tune ARGS` as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "samplegan_tune.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def search_args(space: str | Path, storage: Path, name: str, *more: str) -> list[str]:
    """The arguments of `samplegan-tune search` on both cores of a local Ray."""
    return [
        "search",
        "--space",
        str(space),
        "--num-cpus",
        "2",
        "--storage",
        str(storage),
        "--name",
        name,
        *more,
    ]


def start_driver(env: dict[str, str], *args: str, quiet: bool = False) -> subprocess.Popen:
    """`samplegan-tune ARGS` in its own process group (as a terminal runs it); its output
    on a pipe (stdout and stderr together), or nowhere when `quiet`."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    command = [sys.executable, "-m", "samplegan_tune.cli", *args]
    return subprocess.Popen(
        command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def start_smoke_driver(env: dict[str, str], storage: Path, name: str) -> subprocess.Popen:
    """A 4-trial smoke search, one trial at a time, in its own process group."""
    more = ("--num-samples", "4", "--max-concurrent", "1")
    return start_driver(env, *search_args("smoke", storage, name, *more))


def wait_for_checkpoints(experiment: Path, count: int, timeout: float = 300) -> None:
    """Until the search in `experiment` has saved `count` trial checkpoints."""
    deadline = time.monotonic() + timeout
    while (
        time.monotonic() < deadline and len(list(experiment.glob("trial_*/checkpoint_*"))) < count
    ):
        time.sleep(0.5)
