"""Self-describing training checkpoints: config + weights + optimiser/RNG state + step.

Loaded with `torch.load(weights_only=True)`: a checkpoint can hold tensors and plain values
only, never arbitrary pickled objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import atomic_path
from samplegan_tune.models import ModelFamily, build_model

FORMAT = "samplegan-tune/checkpoint/1"
LAST = Path("checkpoints") / "last.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any], **extra: Any) -> Path:
    """Write `state` (a Trainer.state_dict()) plus `extra` plain values to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state, **extra}, tmp)
    return Path(path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a training folder (its checkpoints/last.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise UserInputError(f"{path}: no checkpoint there (expected a .pt file or a train folder)")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU; UserInputError naming the file if it is not one."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or corrupt files
        raise UserInputError(f"{path}: not a readable checkpoint ({type(err).__name__})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserInputError(f"{path}: not a samplegan-tune checkpoint (format {FORMAT})")
    return state


def load_model(path: str | Path, device: str | torch.device = "cpu") -> ModelFamily:
    """Rebuild the autoencoder + generator from a checkpoint alone, in eval mode."""
    return model_from_state(load_checkpoint(path)).to(device)


def model_from_state(state: dict[str, Any]) -> ModelFamily:
    """The autoencoder + generator of a loaded checkpoint (or Trainer.state_dict()), in eval
    mode."""
    model = build_model(TrainConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()
