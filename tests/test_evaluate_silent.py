"""`evaluate` refuses a silent --real set: every score against it would mean nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from samplegan_tune.audio.sound import write_wav
from samplegan_tune.audio.synthetic import synthetic_songs

SR = 16000


def test_a_silent_real_set_is_refused_in_one_line(tmp_path: Path) -> None:
    write_wav(tmp_path / "real" / "silence.wav", torch.zeros(20 * SR), SR)
    write_wav(tmp_path / "real" / "hiss.wav", 1e-6 * torch.randn(20 * SR), SR)  # -120 dBFS
    (_, song), *_ = synthetic_songs(20.0, SR, seed=6)
    write_wav(tmp_path / "music.wav", song, SR)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "samplegan_tune.cli",
            "evaluate",
            "--real",
            str(tmp_path / "real"),
            "--generated",
            str(tmp_path / "music.wav"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "--real" in line and "silent" in line
    assert result.stdout == ""
