"""An experiment folder: what a search was asked to do (search.json), its Optuna study, and
the data every trial shares. `resume`, `leaderboard` and `export` start from here.

The folder is self-contained: search.json names no path inside it (the folder is where the
file is; a local search's Tune state is the folder itself), so a copied or moved experiment
resumes, ranks and exports where it now is and writes only there."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from samplegan_tune.audio.corpus import default_cache_dir, split_corpus
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import atomic_path
from samplegan_tune.judge.metrics import reference_for
from samplegan_tune.train.run import prepare_data
from samplegan_tune.tuning.space import SearchSettings, SearchSpace, parse_space
from samplegan_tune.tuning.trial import TrialData, reference_clips

DESCRIPTION_FILE = "search.json"
STUDY_FILE = "optuna.db"
FINAL_FIT = "final"  # the final fit's Tune experiment folder, inside the search's


@dataclass
class Experiment:
    """A search request, stored in its folder so that it can be resumed and ranked later."""

    name: str
    folder: Path  # local: our files (search.json, optuna.db, leaderboard, listening page)
    # Tune's storage_path when it is remote (s3://… / gs://…); None when Tune's experiment
    # folder is `folder` itself (a local search). Given as `folder`'s parent, it means None.
    tune_storage: str | None
    space_name: str
    space_yaml: str  # the space as it was when the search started
    settings: SearchSettings
    data: list[str]
    num_samples: int
    seed: int = 0
    time_budget: float | None = None
    start_points: list[dict[str, Any]] = field(default_factory=list)
    address: str | None = None
    cache_dir: str | None = None
    smoke: bool = False  # the space shrunk to smoke size (`search --smoke`)
    baseline: bool = True  # the first trial is the space's defaults (`SearchSpace.baseline`)
    created: float = field(default_factory=time.time)

    @functools.cached_property
    def space(self) -> SearchSpace:
        """The search space parsed from `space_yaml` (at smoke size for a `--smoke` search)."""
        space = parse_space(self.space_name, yaml.safe_load(self.space_yaml))
        return space.smoke() if self.smoke else space

    @property
    def first_points(self) -> list[dict[str, Any]]:
        """What the searcher tries before sampling: the baseline, then `--try`'s points."""
        return ([self.space.baseline()] if self.baseline else []) + self.start_points

    def baseline_params(self) -> dict[str, Any] | None:
        """The baseline trial's sampled config values (as `Entry.params` holds them)."""
        if not self.baseline:
            return None
        values = self.space.sample(optuna.trial.FixedTrial(self.space.baseline()))
        return {p.name: values[p.name] for p in self.space.params if p.active(values)}

    def __post_init__(self) -> None:
        if _is_parent(self.tune_storage, self.folder):
            self.tune_storage = None

    @property
    def tune_path(self) -> str:
        """Tune's experiment folder: `folder` itself for a local search, wherever it is now."""
        if self.tune_storage is None:
            return str(self.folder.resolve())
        return f"{self.tune_storage.rstrip('/')}/{self.name}"

    @property
    def final_path(self) -> str:
        """The final fit's Tune experiment (final_fit.py), inside `tune_path`."""
        return f"{self.tune_path.rstrip('/')}/{FINAL_FIT}"

    @property
    def tune_storage_path(self) -> str:
        """Tune's `storage_path`: the folder above `tune_path`."""
        if self.tune_storage is None:
            return str(self.folder.resolve().parent)
        return self.tune_storage

    @property
    def base_config(self) -> TrainConfig:
        """The space's fixed values: the data settings every trial shares."""
        return TrainConfig.from_dict(self.space.fixed)

    def optuna_storage(self) -> optuna.storages.RDBStorage:
        """The Optuna storage: the SQLite file optuna.db in the experiment folder."""
        return optuna.storages.RDBStorage(f"sqlite:///{self.folder.resolve() / STUDY_FILE}")

    def save(self) -> None:
        """Write search.json: every field but `folder`, so that a moved folder still loads."""
        values = dataclasses.asdict(self)
        del values["folder"]  # where search.json is: stored, it would pin the old place
        text = json.dumps(values, indent=2, allow_nan=False)  # strict JSON: no NaN, Infinity
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / DESCRIPTION_FILE) as tmp:  # a full disk: OutputError
            tmp.write_text(text)

    @classmethod
    def load(cls, folder: str | Path) -> Experiment:
        """The experiment in `folder`; UserInputError if it is not one."""
        folder = Path(folder)
        path = folder / DESCRIPTION_FILE
        if not path.is_file():
            raise UserInputError(f"{folder}: not an experiment folder (no {DESCRIPTION_FILE})")
        try:
            values = json.loads(path.read_text())
            values["settings"] = SearchSettings(**values["settings"])
            # Searches from before folders were relocatable stored both as absolute paths,
            # the Tune storage being the folder's parent: that too means "this folder".
            if _is_parent(values.get("tune_storage"), values.pop("folder", None)):
                values["tune_storage"] = None
            values["folder"] = folder
            values.setdefault("baseline", False)  # searches from before baselines had none
            exp = cls(**values)
        except (ValueError, TypeError, KeyError) as err:
            raise UserInputError(f"{path}: unreadable experiment description ({err})") from err
        exp._check_description(path)
        return exp

    def _check_description(self, path: Path) -> None:
        """Refuse, in one line naming `path`, a description whose data or space a command
        would trip over later (an edited or damaged search.json)."""
        data = self.data
        if not (isinstance(data, list) and data and all(isinstance(d, str) for d in data)):
            raise UserInputError(
                f"{path}: data must be a list of audio files/folders or 'synthetic', got {data!r}"
            )
        points = self.start_points
        if not (isinstance(points, list) and all(isinstance(p, dict) for p in points)):
            raise UserInputError(f"{path}: start_points must be a list of mappings")
        if not isinstance(self.space_yaml, str):
            raise UserInputError(f"{path}: space_yaml must be the space file's text")
        try:
            _ = self.space  # parsed once here, cached for the command
        except yaml.YAMLError as err:
            why = " ".join(str(err).split())
            raise UserInputError(f"{path}: space_yaml is not valid YAML ({why})") from err
        except UserInputError as err:
            raise UserInputError(f"{path}: space_yaml: {err}") from err

    def check_tune_state(self) -> None:
        """Refuse, naming the file, a local search whose newest saved Tune state is damaged:
        Ray writes it in place while the search runs, so a disk that filled (or a crash)
        mid-write leaves it truncated, and restoring it would fail in Ray's own traceback."""
        if self.tune_storage is not None:  # remote: Ray reads it from there
            return
        for folder in (Path(self.tune_path), Path(self.final_path)):
            states = sorted(folder.glob("experiment_state-*.json"))
            if not states:
                continue
            try:
                json.loads(states[-1].read_text())
            except (ValueError, UnicodeDecodeError) as err:
                raise UserInputError(
                    f"{states[-1]}: Tune's saved state is damaged ({err}), most likely "
                    "written while the disk was full; free space, then restore the file from "
                    "a copy (the trials' folders and checkpoints and optuna.db are intact), or "
                    "start a new search"
                ) from err

    def check_study(self) -> None:
        """Refuse, naming the file, an experiment whose Optuna study is missing or unreadable
        (opening it would create an empty one, and trials would be told to nothing)."""
        path = self.folder / STUDY_FILE
        if not path.is_file():
            raise UserInputError(
                f"{path}: the experiment's Optuna study is missing; restore the file (resume "
                "and leaderboard read it, and would otherwise start an empty one)"
            )
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                (health,) = db.execute("PRAGMA quick_check").fetchone()
                if health != "ok":  # a truncated file can still answer the query below
                    raise sqlite3.DatabaseError(health)
                found = db.execute(
                    "SELECT COUNT(*) FROM studies WHERE study_name = ?", (self.name,)
                ).fetchone()[0]
        except sqlite3.Error as err:
            raise UserInputError(f"{path}: not a readable Optuna study ({err})") from err
        if not found:
            raise UserInputError(f"{path}: holds no study named {self.name!r}")

    def study(self) -> optuna.Study:
        """The experiment's Optuna study."""
        return optuna.load_study(study_name=self.name, storage=self.optuna_storage())


def _is_parent(storage: Any, folder: Any) -> bool:
    """Whether `storage` is a local path naming the folder above `folder`."""
    if not isinstance(storage, str) or "://" in storage or not isinstance(folder, (str, Path)):
        return False
    return Path(storage).resolve() == Path(folder).resolve().parent


def prepare_trial_data(exp: Experiment) -> TrialData:
    """Decode (or load from cache) the corpus once and the real-side metric statistics.

    The held-out audio is split in two (by file, or by time for one file): the search part
    primes every report's rollouts, the final part the re-ranking, so the checkpoint a search
    picked is never judged again on the primers that picked it.
    """
    cfg, settings = exp.base_config, exp.settings
    train, heldout = prepare_data(exp.data, cfg, exp.cache_dir)
    cache = Path(exp.cache_dir) if exp.cache_dir else default_cache_dir()
    key = "+".join(exp.data)
    try:
        search_part, final = split_corpus(heldout, 0.5, min_samples=_ranking_window(exp))
    except UserInputError:  # too little held out to split: the ranking reuses the primers
        search_part, final = heldout, None
    primers, clips = reference_clips(search_part, settings, cfg.sample_rate)
    reference = reference_for(clips, cfg.sample_rate, cache, f"{key}:search", primers=primers)
    final_reference = None
    if final is not None:
        primers, clips = reference_clips(final, settings, cfg.sample_rate, settings.rank_seconds)
        final_reference = reference_for(
            clips, cfg.sample_rate, cache, f"{key}:final", primers=primers
        )
    split = "search/final halves" if final is not None else "too short to split"
    description = (
        f"{', '.join(exp.data)}: {train.seconds:.0f} s training, {heldout.seconds:.0f} s "
        f"held out ({split}), {cfg.sample_rate} Hz"
    )
    return TrialData(train, search_part, reference, description, final, final_reference)


def _ranking_window(exp: Experiment) -> int:
    """Samples each held-out part needs: a primer as long as any space's context (4 s, or the
    base config's window), then a real continuation of the search's rollout length."""
    cfg = exp.base_config
    longest = max(cfg.window, 4 * cfg.sample_rate)
    return longest + round(exp.settings.eval_seconds * cfg.sample_rate)
