"""An exported model folder: its file names and format, and loading it back.

Loading imports neither Ray nor Optuna (nor anything of the search): an exported model runs
wherever torch and safetensors do. `export.py` writes the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from samplegan_tune.checkpoint import load_model
from samplegan_tune.config import TrainConfig
from samplegan_tune.errors import UserInputError
from samplegan_tune.models import Model, build_model

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
FORMAT = "samplegan-tune/export/1"


def is_export(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_exported(folder: str | Path, device: str | torch.device = "cpu") -> Model:
    """Rebuild the model from an exported folder alone, in eval mode."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        cfg = TrainConfig.from_dict(json.loads((folder / CONFIG).read_text()))
        weights = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError) as err:
        raise UserInputError(f"{folder}: not a readable exported model ({err})") from err
    if manifest.get("format") != FORMAT:
        raise UserInputError(f"{folder}: not a samplegan-tune export (format {FORMAT})")
    model = build_model(cfg)
    model.load_state_dict(weights)
    return model.to(device).eval()


def load_any_model(path: str | Path, device: str | torch.device = "cpu") -> Model:
    """An exported folder, a training run folder, or a checkpoint file."""
    return load_exported(path, device) if is_export(path) else load_model(path, device)
