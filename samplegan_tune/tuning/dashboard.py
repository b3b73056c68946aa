"""optuna-dashboard for a search: the objective named, and each ranked trial's rollout audio and
spectrogram (the listening page's A/B files) stored as artifacts of its Optuna trial, in a
file-system artifact store inside the experiment folder, so the dashboard plays them:

    optuna-dashboard sqlite:///results/NAME/optuna.db --artifact-dir results/NAME/artifacts

Optuna refuses to set attributes of a finished trial, and every ranked trial is finished; so
each artifact's description goes where optuna-dashboard also looks for a trial's artifacts: a
study system attribute `dashboard:artifacts:<trial id>:<artifact id>`.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
import warnings
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning.experiment import STUDY_FILE, Experiment
from samplegan_tune.tuning.leaderboard import Leaderboard
from samplegan_tune.tuning.outcomes import TUNE_ID_ATTR

ARTIFACT_DIR = "artifacts"  # in the experiment folder: optuna-dashboard's --artifact-dir
MEDIA_DIR = Path("listening") / "media"  # the listening page's files, rank{N}-{kind}.{wav,png}
MEDIA_KINDS = ("generated", "true")  # the continuation and the true one of the same primer
MIMETYPES = {".wav": "audio/wav", ".png": "image/png"}
OBJECTIVE_ATTR = "objective"  # a study user attribute saying which way is better
_TRIAL_PREFIX = "dashboard:artifacts:"  # + "<trial id>:<artifact id>" (optuna-dashboard's)
_OURS = re.compile(r"rank\d+-(generated|true)\.(wav|png)")


def name_objective(exp: Experiment) -> None:
    """Name the study's objective `quality/score` and say that lower is better."""
    study = exp.study()
    with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([SCORE])
    study.set_user_attr(OBJECTIVE_ATTR, f"{SCORE}: lower is better (see leaderboard.md's scale)")


def command(exp: Experiment) -> str:
    """The command line that opens this search in optuna-dashboard (on 127.0.0.1:8080)."""
    study, artifacts = exp.folder.resolve() / STUDY_FILE, exp.folder.resolve() / ARTIFACT_DIR
    return f"optuna-dashboard sqlite:///{study} --artifact-dir {artifacts}"


def artifact_store(exp: Experiment) -> FileSystemArtifactStore:
    """The experiment's Optuna artifact store (its ARTIFACT_DIR folder, created if missing)."""
    folder = exp.folder / ARTIFACT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder)


def attach_media(exp: Experiment, board: Leaderboard) -> int:
    """Store each ranked trial's media files as artifacts of its Optuna trial.

    The artifacts of an earlier ranking are removed first (files and descriptions), so a
    re-ranked search shows only the current ranks. Returns how many files were stored.
    """
    storage, store = exp.optuna_storage(), artifact_store(exp)
    study_id = storage.get_study_id_from_name(exp.name)
    remove_media(storage, store, study_id)
    trials = {t.user_attrs.get(TUNE_ID_ATTR): t for t in storage.get_all_trials(study_id)}
    stored = 0
    for entry in board.entries:
        trial = trials.get(entry.trial_id)
        if trial is None:  # a study from before trials carried their Tune id
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        for path in media_files(exp.folder / MEDIA_DIR, entry.rank):
            _upload(storage, store, study_id, trial_id, path)
            stored += 1
    return stored


def media_files(folder: Path, rank: int) -> list[Path]:
    """The listening page's files of `rank` that exist: WAV and PNG of each kind."""
    names = [f"rank{rank}-{kind}{suffix}" for kind in MEDIA_KINDS for suffix in MIMETYPES]
    return [folder / name for name in names if (folder / name).is_file()]


def remove_media(
    storage: optuna.storages.BaseStorage, store: FileSystemArtifactStore, study_id: int
) -> None:
    """Remove the media artifacts this module stored (optuna-dashboard skips a null one)."""
    for key, value in storage.get_study_system_attrs(study_id).items():
        meta = json.loads(value) if key.startswith(_TRIAL_PREFIX) and value else None
        if not meta or not _OURS.fullmatch(meta.get("filename", "")):
            continue
        with contextlib.suppress(ArtifactNotFound):
            store.remove(meta["artifact_id"])
        storage.set_study_system_attr(study_id, key, json.dumps(None))


def _upload(
    storage: optuna.storages.BaseStorage,
    store: FileSystemArtifactStore,
    study_id: int,
    trial_id: int,
    path: Path,
) -> None:
    artifact_id = str(uuid.uuid4())
    with open(path, "rb") as handle:
        store.write(artifact_id, handle)
    meta = {
        "artifact_id": artifact_id,
        "filename": path.name,
        "mimetype": MIMETYPES[path.suffix],
        "encoding": None,
    }
    storage.set_study_system_attr(
        study_id, f"{_TRIAL_PREFIX}{trial_id}:{artifact_id}", json.dumps(meta)
    )
