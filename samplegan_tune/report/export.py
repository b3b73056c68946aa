"""Export a ranked model to a standalone folder (loaded back by `artifact.py`, with no Ray).

The folder holds `model.safetensors` (autoencoder + generator weights), `config.json` (the
TrainConfig that builds them), `metrics.json` (its leaderboard scores) and `manifest.json`
(package versions, seed, data description, where it came from).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from safetensors.torch import save_file

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import (
    as_any_new_file,
    check_output_dir,
    swap_in,
    temp_sibling,
    writing,
)
from samplegan_tune.models import ModelFamily
from samplegan_tune.models.artifact import (
    CHECKSUM,
    CONFIG,
    FORMAT,
    MANIFEST,
    METRICS,
    WEIGHTS,
    sha256_of,
)
from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.leaderboard import read_leaderboard
from samplegan_tune.tuning.ranking import load_ranked_model

EXPORT_FILES = (WEIGHTS, CONFIG, METRICS, MANIFEST)
_PACKAGES = ("samplegan-tune", "torch", "torchaudio", "ray", "optuna", "safetensors", "numpy")


def export(experiment: str | Path, rank: int, out: str | Path, force: bool = False) -> Path:
    """Write the model ranked `rank` in `experiment` to the folder `out`."""
    exp = Experiment.load(experiment)
    entries = read_leaderboard(exp.folder).entries
    if not entries:
        raise UserInputError(f"{exp.folder}: no ranked survivors (run `leaderboard` first)")
    if not 1 <= rank <= len(entries):
        raise UserInputError(f"--rank {rank}: the leaderboard has ranks 1 to {len(entries)}")
    out = check_replaceable_export(out, exp.folder, force)
    entry = entries[rank - 1]
    if entry.flags:
        flags = ", ".join(entry.flags)
        print(
            f"warning: rank {rank} is flagged {flags}: no trial of {exp.name} passed the "
            "collapse detectors; this is its best attempt",
            flush=True,
        )
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
    }
    _write_folder(out, model, manifest, files)
    return out


def check_replaceable_export(out: str | Path, experiment: Path, force: bool) -> Path:
    """Check that folder `out` may receive an export of `experiment`: it is new, empty, or
    (with `force`) an earlier export holding nothing else. Never the experiment or a folder
    above it, nor a folder of other files. Returns the path; changes nothing."""
    out = check_output_dir(out)
    here, source = out.resolve(), experiment.resolve()
    if here == source or here in source.parents:
        where = "is" if here == source else "holds"
        raise UserInputError(f"{out}: {where} the experiment {experiment}; export elsewhere")
    if not out.exists() or not any(out.iterdir()):
        return out
    if not force:
        raise UserInputError(f"{out}: exists and is not empty; pass --force to replace it")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_FILES)
    if foreign or not _is_export(out):
        what = f"holds {', '.join(foreign[:3])}" if foreign else "has no export manifest"
        raise UserInputError(
            f"{out}: not an earlier export ({what}); --force replaces only an export folder"
        )
    return out


def _is_export(folder: Path) -> bool:
    try:
        return json.loads((folder / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _write_folder(out: Path, model: ModelFamily, manifest: dict, files: dict[str, str]) -> None:
    """Build the folder beside `out` (the manifest with the weights' checksum), then swap it
    in: never a half-written export, and an earlier export is replaced in one atomic
    exchange (it stays whole until then)."""
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = temp_sibling(out)
        staging.mkdir(0o777)  # less the umask, as any folder (mkdtemp's 0700 hid the export)
    try:
        _fill(staging, out, model, manifest, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fill(
    staging: Path, out: Path, model: ModelFamily, manifest: dict, files: dict[str, str]
) -> None:
    """Write the export into `staging`, then swap it in as `out`."""
    with writing(out):
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, str(staging / WEIGHTS))
        as_any_new_file(staging / WEIGHTS)  # save_file leaves it 0600
        manifest = {**manifest, CHECKSUM: sha256_of(staging / WEIGHTS)}
        for name, text in {**files, MANIFEST: json.dumps(manifest, indent=2)}.items():
            (staging / name).write_text(text)
        swap_in(staging, out)  # staging now holds the old export, removed by the caller


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
