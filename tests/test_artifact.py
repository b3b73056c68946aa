"""An exported folder loads back alone; a damaged one is refused in one line by the real
`generate` (exit 2, no WAV written, the export left as it was), never a traceback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import soundfile as sf

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import build_model
from samplegan_tune.models.artifact import CHECKSUM, FORMAT, MANIFEST, WEIGHTS, load_exported
from samplegan_tune.report.export import _write_folder
from tests.conftest import TINY, cli


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """A folder as `export` writes it, of a tiny untrained model."""
    model = build_model(TrainConfig.from_dict(TINY))
    out = tmp_path / "model"
    files = {"config.json": json.dumps(model.cfg.to_dict()), "metrics.json": "{}"}
    _write_folder(out, model, {"format": FORMAT}, files)
    return out


def test_every_exported_file_gets_the_mode_any_new_file_gets(tmp_path: Path) -> None:
    """The weights too (safetensors writes 0600): a listening page or a colleague reading a
    shared export must not be refused."""
    saved = os.umask(0o022)
    try:
        model = build_model(TrainConfig.from_dict(TINY))
        _write_folder(tmp_path / "model", model, {"format": FORMAT}, {"config.json": "{}"})
    finally:
        os.umask(saved)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").iterdir()}
    assert set(modes) >= {WEIGHTS, MANIFEST} and set(modes.values()) == {0o644}, modes


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_an_export_loads_back_and_generates(exported: Path, env, tmp_path: Path) -> None:
    assert len(json.loads((exported / MANIFEST).read_text())[CHECKSUM]) == 64
    assert load_exported(exported).cfg.segment == TINY["segment"]
    wav = tmp_path / "x.wav"
    done = cli(env, "generate", str(exported), "--seconds", "0.5", "--out", str(wav))
    assert done.returncode == 0, done.stderr[-2000:]
    assert sf.info(wav).frames == 8000


def _truncate(folder: Path) -> None:
    weights = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(weights[: len(weights) // 2])


def _flip_a_byte(folder: Path) -> None:
    weights = bytearray((folder / WEIGHTS).read_bytes())
    weights[-100] ^= 0xFF  # inside the last tensor's data: still a well-formed file
    (folder / WEIGHTS).write_bytes(bytes(weights))


def _garble_without_checksum(folder: Path) -> None:
    """An export from before the checksum, its weights overwritten with noise."""
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest[CHECKSUM]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    (folder / WEIGHTS).write_bytes(b"\x00\xff" * 5000)


def _another_models_weights(folder: Path) -> None:
    """Well-formed weights of a different model, checksum and all (e.g. a copied file)."""
    other = build_model(TrainConfig.from_dict({**TINY, "ae_channels": 8}))
    _write_folder(folder.parent / "other", other, {"format": FORMAT}, {})
    (folder / WEIGHTS).write_bytes((folder.parent / "other" / WEIGHTS).read_bytes())
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest[CHECKSUM] = json.loads((folder.parent / "other" / MANIFEST).read_text())[CHECKSUM]
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_truncate, ["differs from the manifest's"]),
        (_flip_a_byte, ["differs from the manifest's"]),
        (_garble_without_checksum, ["unreadable or corrupt weights"]),
        (_another_models_weights, ["state_dict"]),
        (lambda folder: (folder / WEIGHTS).unlink(), ["No such file"]),
    ],
)
def test_generate_refuses_damaged_weights_in_one_line(exported, env, tmp_path, damage, words):
    """A corrupt model.safetensors gave a traceback (or, flipped, silently other weights)."""
    damage(exported)
    before = _snapshot(exported)
    wav = tmp_path / "x.wav"
    done = cli(env, "generate", str(exported), "--seconds", "0.5", "--out", str(wav))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and str(exported / WEIGHTS) in lines[0]
    assert "export the model again" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert not wav.exists() and _snapshot(exported) == before
