"""Export a ranked model to a standalone folder (loaded back by `artifact.py`, with no Ray).

The folder holds `model.safetensors` (autoencoder + generator weights), `config.json` (the
TrainConfig that builds them), `metrics.json` (its leaderboard scores) and `manifest.json`
(package versions, seed, data description, where it came from).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from safetensors.torch import save_file

from samplegan_tune.artifact import CONFIG, FORMAT, MANIFEST, METRICS, WEIGHTS
from samplegan_tune.errors import UserInputError
from samplegan_tune.experiment import Experiment
from samplegan_tune.fileio import check_output_dir
from samplegan_tune.leaderboard import read_leaderboard
from samplegan_tune.models import Model
from samplegan_tune.ranking import load_ranked_model

_PACKAGES = ("samplegan-tune", "torch", "torchaudio", "ray", "optuna", "safetensors", "numpy")


def export(experiment: str | Path, rank: int, out: str | Path, force: bool = False) -> Path:
    """Write the model ranked `rank` in `experiment` to the folder `out`."""
    exp = Experiment.load(experiment)
    entries = read_leaderboard(exp.folder).entries
    if not entries:
        raise UserInputError(f"{exp.folder}: no ranked survivors (run `leaderboard` first)")
    if not 1 <= rank <= len(entries):
        raise UserInputError(f"--rank {rank}: the leaderboard has ranks 1 to {len(entries)}")
    out = check_output_dir(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise UserInputError(f"{out}: exists and is not empty; pass --force to replace it")
    entry = entries[rank - 1]
    if entry.flags:
        flags = ", ".join(entry.flags)
        print(f"warning: rank {rank} is flagged {flags}: no trial of {exp.name} passed the "
              "collapse detectors; this is its best attempt", flush=True)  # fmt: skip
    model, state = load_ranked_model(exp.folder, entry)
    manifest = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "experiment": exp.name,
        "rank": rank,
        "trial_id": entry.trial_id,
        "step": int(state["step"]),
        "seed": model.cfg.seed,
        "search_seed": exp.seed,
        "data": exp.data,
        "versions": _versions(),
        "python": platform.python_version(),
    }
    files = {
        CONFIG: json.dumps(model.cfg.to_dict(), indent=2),
        METRICS: json.dumps(asdict(entry), indent=2),
        MANIFEST: json.dumps(manifest, indent=2),
    }
    _write_folder(out, model, files)
    return out


def _write_folder(out: Path, model: Model, files: dict[str, str]) -> None:
    """Build the folder beside `out`, then swap it in: never a half-written export."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, str(staging / WEIGHTS))
        for name, text in files.items():
            (staging / name).write_text(text)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
