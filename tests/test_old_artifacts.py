"""A checkpoint and an export written by the flat layout (commit a5a5ec3, before the package
was laid out by stage) still load and generate the same continuation.

tests/data/flat_layout holds a tiny model's `train` checkpoint (4 steps) and its export, both
written by that commit, and the 2-s WAV that commit's `generate` made from them (the same
bytes from either)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import cli

OLD = Path(__file__).parent / "data" / "flat_layout"


@pytest.mark.parametrize("model", ["last.pt", "export"])
def test_a_model_saved_before_the_layout_generates_the_same(
    model: str, env, tmp_path: Path
) -> None:
    wav = tmp_path / "now.wav"
    made = cli(env, "generate", str(OLD / model), "--seconds", "2", "--out", str(wav))
    assert made.returncode == 0, made.stderr[-3000:]
    now, rate = sf.read(wav)
    then, then_rate = sf.read(OLD / "continuation.wav")
    assert rate == then_rate == 16000 and now.shape == then.shape
    assert np.abs(then).max() > 0.01  # a continuation, not silence
    assert np.abs(now - then).max() <= 2 / 32768  # the same samples, to the last bit or two
