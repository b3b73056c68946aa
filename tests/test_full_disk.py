"""A full disk: `train`, `generate` and `export` say so in one line naming the path (exit 2)
and leave nothing half-written (issue 20, point 3). The disk is a real 64 KiB tmpfs, so
these run only where the test may mount one (root)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.errors import OutputError
from samplegan_tune.models import build_model
from samplegan_tune.models.artifact import FORMAT, MANIFEST, WEIGHTS
from samplegan_tune.report.export import _write_folder
from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.leaderboard import read_leaderboard
from samplegan_tune.tuning.outcomes import LOST, OUTCOME_ATTR
from tests.conftest import TINY, cli

BIGGER = {**TINY, "g_channels": 64}  # its weights alone outgrow the disk


def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)  # a Ray worker may linger


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted after."""
    yield from _tmpfs(tmp_path / "disk", "64k")


@pytest.fixture
def search_disk(tmp_path: Path) -> Iterator[Path]:
    """A 5 MiB tmpfs: a smoke search's first checkpoints (1 MiB each) fit, its 13 MiB not."""
    yield from _tmpfs(tmp_path / "disk", "5m")


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    model = build_model(TrainConfig.from_dict(BIGGER))
    files = {"config.json": json.dumps(model.cfg.to_dict()), "metrics.json": "{}"}
    _write_folder(tmp_path / "model", model, {"format": FORMAT}, files)
    return tmp_path / "model"


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


def _assert_one_line(result: subprocess.CompletedProcess, path: Path) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert str(path) in last and "No space left on device" in last, last


def test_generate_on_a_full_disk(disk: Path, model_folder: Path, env) -> None:
    wav = disk / "x.wav"
    result = cli(env, "generate", str(model_folder), "--seconds", "30", "--out", str(wav))
    _assert_one_line(result, wav)  # LibsndfileError: System error
    assert not wav.exists() and not _hidden(disk)


def test_train_on_a_full_disk(disk: Path, env, tmp_path: Path) -> None:
    config = tmp_path / "bigger.yaml"
    config.write_text(yaml.safe_dump(BIGGER))
    run = disk / "run"
    result = cli(env, "train", "--config", str(config), "--steps", "2", "--out", str(run))
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert str(run) in last and "No space left on device" in last, last  # unexpected pos
    assert "Traceback" not in result.stderr, result.stderr[-3000:]  # tensorboardX's thread
    assert not (run / "checkpoints" / "last.pt").exists() and not _hidden(disk)


def test_export_on_a_full_disk_keeps_the_earlier_export(disk: Path, model_folder: Path) -> None:
    out = disk / "model"  # an earlier export, as small as one can be
    out.mkdir()
    for name, data in {WEIGHTS: b"old", MANIFEST: json.dumps({"format": FORMAT})}.items():
        (out / name).write_bytes(data.encode() if isinstance(data, str) else data)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bigger = build_model(TrainConfig.from_dict(BIGGER))
    with pytest.raises(OutputError, match="No space left on device") as refused:
        _write_folder(out, bigger, {"format": FORMAT}, {"config.json": "{}", "metrics.json": "{}"})
    assert str(out) in str(refused.value)  # SafetensorError before
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (
        json.loads((out / MANIFEST).read_text())["format"] == FORMAT and (out / WEIGHTS).is_file()
    )
    assert not _hidden(disk)


def test_leaderboard_on_a_full_disk_keeps_the_earlier_one(disk: Path) -> None:
    """`leaderboard` rewrites its files: a disk that fills meanwhile leaves each old file
    whole and says which file could not be written."""
    from samplegan_tune.tuning.leaderboard import Entry, Leaderboard, write_leaderboard

    entry = Entry(1, "t1", 1.0, 0.1, 1.2, 300, "ranked/1/trial.pt", {"lr_g": 1e-3})
    write_leaderboard(disk, Leaderboard([entry], {"real continuation": 1.0}))
    before = {p.name: p.read_bytes() for p in disk.iterdir()}
    with pytest.raises(OSError), open(disk / "filler", "wb") as filler:
        while True:  # until the disk is full
            filler.write(b"x" * 4096)
            filler.flush()
    huge = {f"p{i}": "x" * 200 for i in range(100)}
    with pytest.raises(OutputError, match="No space left on device") as refused:
        write_leaderboard(disk, Leaderboard([Entry(1, "t2", 2.0, 0.1, 2.0, 9, "c", huge)]))
    assert "leaderboard" in str(refused.value)
    assert {p.name: p.read_bytes() for p in disk.iterdir() if p.name != "filler"} == before
    assert read_leaderboard(disk).entries[0].trial_id == "t1" and not _hidden(disk)


@pytest.mark.slow
def test_a_search_that_fills_its_disk_stops_saved_and_resumes_to_every_trial(
    search_disk: Path, env
) -> None:
    """The search stops (as Ctrl-C would) before the disk is full, in one line, exit 2; once
    there is room, `resume` finishes every trial and ranks them (before: truncated Tune
    state, a trial lost, `resume` starting over and exiting 0)."""
    folder = search_disk / "fd"
    result = cli(env, "search", "--space", "smoke", "--name", "fd", "--storage", str(search_disk))
    _assert_one_line(result, folder)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    exp = Experiment.load(folder)
    exp.check_tune_state()  # whole: the search stopped before it could be cut
    told = optuna.load_study(study_name="fd", storage=exp.optuna_storage()).trials
    assert sum(t.state.is_finished() for t in told) < exp.num_samples  # it did stop early
    subprocess.run(["mount", "-o", "remount,size=64m", str(search_disk)], check=True)
    resumed = cli(env, "resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="fd", storage=exp.optuna_storage())
    outcomes = [t.user_attrs.get(OUTCOME_ATTR) for t in study.trials]
    assert len(outcomes) == exp.num_samples and LOST not in outcomes, outcomes
    assert all(t.state.is_finished() for t in study.trials)
    assert read_leaderboard(folder).entries  # ranked
