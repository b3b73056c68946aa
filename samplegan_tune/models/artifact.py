"""An exported model folder: its file names and format, and loading it back.

Loading imports neither Ray nor Optuna (nor anything of the search): an exported model runs
wherever torch and safetensors do. `export.py` writes the folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.models import ModelFamily, build_model
from samplegan_tune.models.checkpoint import load_model

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
FORMAT = "samplegan-tune/export/1"
CHECKSUM = "weights_sha256"  # in the manifest (exports from before it have none)


def is_export(path: str | Path) -> bool:
    """Whether `path` is an exported model's folder (it holds the manifest)."""
    return (Path(path) / MANIFEST).is_file()


def load_exported(folder: str | Path, device: str | torch.device = "cpu") -> ModelFamily:
    """Rebuild the model from an exported folder alone, in eval mode."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        cfg = TrainConfig.from_dict(json.loads((folder / CONFIG).read_text()))
    except (OSError, ValueError, TypeError, AttributeError, UserInputError) as err:
        raise UserInputError(f"{folder}: not a readable exported model ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserInputError(f"{folder}: not a samplegan-tune export (format {FORMAT})")
    model = build_model(cfg)
    path = folder / WEIGHTS
    expected = manifest.get(CHECKSUM)
    try:
        if expected is not None and sha256_of(path) != expected:
            raise OSError("its SHA-256 differs from the manifest's")
        model.load_state_dict(load_file(str(path)))
    except (OSError, SafetensorError, RuntimeError) as err:  # truncated, garbled, foreign
        why = next(iter(str(err).splitlines()), type(err).__name__)
        raise UserInputError(
            f"{path}: unreadable or corrupt weights ({why}); export the model again"
        ) from err
    return model.to(device).eval()


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file's bytes: a flipped bit in the weights is caught at load."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_any_model(path: str | Path, device: str | torch.device = "cpu") -> ModelFamily:
    """An exported folder, a training run folder, or a checkpoint file."""
    return load_exported(path, device) if is_export(path) else load_model(path, device)
