from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from samplegan_tune.core.fileio import atomic_path, exchange, temp_sibling


def test_exchange_swaps_two_folders_and_both_stay_whole(tmp_path: Path) -> None:
    old, new = tmp_path / "export", tmp_path / ".export.staging"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir()
        (folder / "model.safetensors").write_text(text)
        (folder / "manifest.json").write_text(text)
    exchange(new, old)
    assert (old / "model.safetensors").read_text() == "new"
    assert (new / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export.staging", "export"]


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for a test; restored after."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def test_atomic_outputs_get_the_mode_any_new_file_gets(tmp_path: Path, umask) -> None:
    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        umask(mask)
        path = tmp_path / f"clip{mask:o}.wav"
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"RIFF")
        assert stat.S_IMODE(path.stat().st_mode) == mode, f"umask {mask:o}"
    umask(0o022)
    folder = temp_sibling(tmp_path / "export")
    folder.mkdir(0o777)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_a_temp_file_a_killed_writer_left_is_removed_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(path)], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".last.pt")]
    assert not path.exists()
    alive = temp_sibling(path)  # this process's own, still being written: kept
    alive.write_text("mine")
    elsewhere = tmp_path / f".last.pt.tmp+another-host+{killed_pid(left)}+0000.pt"
    elsewhere.write_text("theirs")  # its process cannot be checked from here: kept
    with atomic_path(path) as tmp:
        tmp.write_text("whole")
    assert path.read_text() == "whole" and not left.exists()
    assert alive.exists() and elsewhere.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, alive.name, elsewhere.name]
    )


def killed_pid(temp: Path) -> str:
    return temp.name.split("+")[2]


KILLED_MID_WRITE = """
import os, signal, sys
from samplegan_tune.core.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
"""
