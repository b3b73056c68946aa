"""A full disk: `train`, `generate` and `export` say so in one line naming the path (exit 2)
and leave nothing half-written (issue 20, point 3). The disk is a real 64 KiB tmpfs, so
these run only where the test may mount one (root)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from samplegan_tune.artifact import FORMAT, MANIFEST, WEIGHTS
from samplegan_tune.config import TrainConfig
from samplegan_tune.errors import OutputError
from samplegan_tune.export import _write_folder
from samplegan_tune.models import build_model
from tests.conftest import TINY, cli

BIGGER = {**TINY, "g_channels": 64}  # its weights alone outgrow the disk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted after."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


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
    from samplegan_tune.leaderboard import Entry, Leaderboard, read_leaderboard, write_leaderboard

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
