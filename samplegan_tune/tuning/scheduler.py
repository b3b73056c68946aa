"""The search's early stopping: ASHA on adversarial steps, keeping every trial in the
experiment folder the search runs in now (a copied or moved experiment resumes there)."""

from __future__ import annotations

import copy
import os
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.trial import ADVERSARIAL_STEPS


class FolderASHA(ASHAScheduler):
    """ASHA that keeps every trial it is given in the experiment folder the search runs in.

    A resumed search makes its new trials from the state Tune saved, which names the folder
    where the search started (Ray moves only the trials it restores): a copied experiment
    would train them into the original. `search.relocate` gives it the folder where it is now.
    """

    def __init__(self, *args: Any, experiment_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.experiment_path = experiment_path

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """Put the trial's storage in `experiment_path` (when set), then add it as ASHA does."""
        if self.experiment_path is not None:
            parent, name = os.path.split(self.experiment_path)
            storage = trial.storage
            if (storage.storage_fs_path, storage.experiment_dir_name) != (parent, name):
                moved = copy.copy(storage)
                moved.storage_fs_path, moved.experiment_dir_name = parent, name
                trial.set_storage(moved)
        super().on_trial_add(tune_controller, trial)


def asha(exp: Experiment, experiment_path: str | None = None) -> FolderASHA:
    """The search's early stopping; `experiment_path`: see `FolderASHA`."""
    settings = exp.settings
    return FolderASHA(
        # Rungs count adversarial steps, not reports: a trial still in stage 1 or D's
        # warm-up (whose reports are flagged) is never compared at a rung yet.
        time_attr=ADVERSARIAL_STEPS,
        metric=SCORE,
        mode="min",
        max_t=settings.max_steps,
        grace_period=settings.grace_steps,
        reduction_factor=settings.reduction_factor,
        experiment_path=experiment_path,
    )
