"""Where each module of the flat layout (before 2026-12-05) lives now.

Ray Tune pickles our objects by module path (tuner.pkl, the searcher's state, the trials'
configs), so an experiment started before the move names `samplegan_tune.search` and the
like. `install` lets `import samplegan_tune.OLD` load the module's new home, so such an
experiment still resumes, ranks and exports. Checkpoints and exports hold no module paths.
(`audio`, `judge` and `cli` are packages now; nothing pickled names those three modules.)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

MOVED = {
    "errors": "core.errors",
    "fileio": "core.fileio",
    "config": "core.config",
    "lock": "core.lock",
    "data": "audio.corpus",
    "synthetic": "audio.synthetic",
    "checkpoint": "models.checkpoint",
    "artifact": "models.artifact",
    "features": "judge.features",
    "timefeatures": "judge.timefeatures",
    "continuity": "judge.continuity",
    "musicnn": "judge.musicnn",
    "tfbundle": "judge.tfbundle",
    "musicmetrics": "judge.musicmetrics",
    "metric_names": "judge.metric_names",
    "metrics": "judge.metrics",
    "collapse": "judge.collapse",
    "scale": "judge.scale",
    "calibration": "judge.calibration",
    "degrade": "judge.degrade",
    "losses": "train.losses",
    "rollout": "train.rollout",
    "unroll": "train.unroll",
    "trainer": "train.trainer",
    "tblog": "train.eventlog",
    "training_run": "train.run",
    "space": "tuning.space",
    "start_points": "tuning.start_points",
    "trial": "tuning.trial",
    "experiment": "tuning.experiment",
    "outcomes": "tuning.outcomes",
    "scheduler": "tuning.scheduler",
    "tbsearch": "tuning.trial_events",
    "trainable": "tuning.trainable",
    "search": "tuning.search",
    "final_fit": "tuning.final_fit",
    "ranking": "tuning.ranking",
    "leaderboard": "tuning.leaderboard",
    "dashboard": "tuning.dashboard",
    "disk_guard": "tuning.disk_guard",
    "cluster": "tuning.cluster",
    "listening": "report.listening",
    "figures": "report.figures",
    "export": "report.export",
    "search_cli": "cli.search",
    "evaluate_cmd": "cli.evaluate",
}


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `samplegan_tune.OLD` and hands back the module at its new home."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        """A spec for an old module name; None for any other name."""
        old = name.removeprefix("samplegan_tune.")
        if name.startswith("samplegan_tune.") and old in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        """The new module itself, so both names share one module and its classes."""
        return importlib.import_module("samplegan_tune." + MOVED[spec.name.split(".", 1)[1]])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module ran when it was imported."""


def install() -> None:
    """Let the old module names import (once; after every real finder)."""
    if not any(isinstance(f, _OldNames) for f in sys.meta_path):
        sys.meta_path.append(_OldNames())
