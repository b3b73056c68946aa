"""Ray Tune glue only: trial config -> Trial; report each interval with a checkpoint; resume.

The work itself lives in `trial.py` (no Ray there), so it can be tested and reused alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.judge import collapse
from samplegan_tune.models.checkpoint import load_checkpoint, save_checkpoint
from samplegan_tune.train.eventlog import EventLog
from samplegan_tune.tuning.outcomes import INVALID_CONFIG, OUT_OF_MEMORY
from samplegan_tune.tuning.space import SearchSettings, config_from_trial_params
from samplegan_tune.tuning.trial import (
    ADVERSARIAL_STEPS,
    COLLAPSED_SCORE,
    REPORTS,
    Trial,
    TrialData,
)

CHECKPOINT_FILE = "trial.pt"
NODE = "node"  # reported: the Ray node that ran the interval (which machine, on a cluster)
ROLLOUT_TAG = "rollout"  # TensorBoard: one rollout clip per report, and its spectrogram
# The trainable's own event file, beside Ray's in the trial folder: a distinct name, so
# that syncing the trial's working dir to storage never overwrites Ray's file.
EVENTS_SUFFIX = ".rollouts"
# A final-fit trial's config (final_fit.py): the search's trial config plus these three.
CONTINUES = "final_of"  # the search trial it continues
START = "final_from"  # its start checkpoint, relative to the search's Tune folder
START_STEP = "final_step"  # that checkpoint's training step
FINAL_KEYS = (CONTINUES, START, START_STEP)


def train_trial(
    config: dict[str, Any], data: TrialData, settings: SearchSettings, root: str = ""
) -> None:
    """The function trainable: `tune.with_parameters(train_trial, data=..., settings=...)`.

    A final-fit trial (config `START`) starts from that checkpoint under `root`, the search's
    Tune folder where it is now; once it has saved its own, it resumes from those.
    """
    try:
        cfg = config_from_trial_params({k: v for k, v in config.items() if k not in FINAL_KEYS})
    except UserInputError as err:  # a sampled combination the config rejects: infeasible
        _report_infeasible(INVALID_CONFIG, str(err))
        return
    device = "cuda" if torch.cuda.is_available() and settings.gpus_per_trial > 0 else "cpu"
    trial = Trial(cfg, data, settings, device)
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and config.get(START):
        checkpoint = tune.Checkpoint(f"{root.rstrip('/')}/{config[START]}")
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trial.load_state_dict(load_checkpoint(Path(folder) / CHECKPOINT_FILE))
    events = EventLog(tune.get_context().get_trial_dir(), cfg.sample_rate, EVENTS_SUFFIX)
    try:
        _run(trial, events, device)
    finally:
        events.close()


def _run(trial: Trial, events: EventLog, device: str) -> None:
    """Report every interval with a checkpoint (and a rollout clip to TensorBoard)."""
    while not trial.finished:
        try:
            report = trial.run_interval()
        except torch.OutOfMemoryError:  # this config does not fit: infeasible, not retried
            _report_infeasible(OUT_OF_MEMORY, f"CUDA out of memory on {device}")
            return
        report[NODE] = ray.get_runtime_context().get_node_id()
        if trial.last_clips is not None:  # before the report: its checkpoint syncs the file
            events.audio(ROLLOUT_TAG, trial.last_clips[0], trial.reports)
            events.flush()
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder) / CHECKPOINT_FILE, trial.state_dict())
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
        if report[collapse.REASON_METRIC]:
            return


def _report_infeasible(reason: str, detail: str) -> None:
    tune.report(
        {
            "quality/score": COLLAPSED_SCORE,
            collapse.REASON_METRIC: reason,
            "collapse/detail": detail,
            REPORTS: 0,
            ADVERSARIAL_STEPS: 0,
        }
    )
