"""A search stops, its state saved, before its disk fills, or as soon as a trial finds it
full: a full disk must cost the user a `resume`, never a trial.

Tune writes its experiment state in place and copies checkpoints file by file; on a disk
that fills up mid-write both are left cut, and a trial that cannot write is retried
until it errors. So `DiskGuard` watches the free space of the experiment's folder while
Tune runs: when less is left than the next round of reports needs (a checkpoint per
running trial and a copy of the state, with margin), or a trial fails with "No space left
on device", it stops Tune the way Ctrl-C does (every trial's state saved, running trials
left to resume). `fit` then raises one OutputError naming the folder.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

from ray import tune

from samplegan_tune.core.errors import OutputError

NO_SPACE = "No space left on device"
CHECK_EVERY_S = 0.5
MARGIN = 1 << 20  # bytes kept free beyond the estimate: event files, the study, logs


class DiskGuard(tune.Callback):
    """Stops the run (as Ctrl-C would) when `folder`'s disk is nearly or already full."""

    def __init__(self, folder: Path, resume_hint: str) -> None:
        self.folder, self.resume_hint = folder, resume_hint
        self.full = ""  # why it stopped the run: one line for the user
        self._largest_checkpoint, self._last_check = 0, 0.0

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **_) -> None:
        """Remember the size in bytes of the largest checkpoint written so far."""
        size = sum(f.stat().st_size for f in Path(checkpoint.path).rglob("*") if f.is_file())
        self._largest_checkpoint = max(self._largest_checkpoint, size)

    def on_step_end(self, iteration: int, trials: list, **_) -> None:
        """At most every CHECK_EVERY_S, stop the run (as Ctrl-C does) when the folder's disk has
        less free space than `needed`."""
        now = time.monotonic()
        if self.full or now - self._last_check < CHECK_EVERY_S or not self.folder.is_dir():
            return
        self._last_check = now
        running = sum(t.status == "RUNNING" for t in trials)
        need = self.needed(running)
        free = shutil.disk_usage(self.folder).free
        if free < need:
            self._stop(f"{free / 1e6:.1f} MB free, the next reports need about {need / 1e6:.1f} MB")

    def needed(self, running: int) -> int:
        """Bytes the next round of reports may write: a checkpoint per running trial (and
        one more, a trial starting), twice the Tune state (it is rewritten), and MARGIN."""
        states = self.folder.glob("experiment_state-*.json")
        state = max((p.stat().st_size for p in states), default=0)
        return (running + 1) * self._largest_checkpoint + 2 * state + MARGIN

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **_) -> None:
        """Stop the run when the trial's error says the disk is full."""
        self._check_error(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_) -> None:
        """Stop the run when the trial's error says the disk is full."""
        self._check_error(trial)

    def _check_error(self, trial: Any) -> None:
        error = Path(trial.error_file) if trial.error_file else None
        try:
            text = error.read_text() if error else ""
        except OSError:
            text = ""
        if not self.full and (NO_SPACE in text or "Errno 28" in text):
            self._stop(f"trial {trial.trial_id} could not write")

    def _stop(self, why: str) -> None:
        self.full = f"{self.folder}: {NO_SPACE} ({why}); {self.resume_hint}"
        print(f"[search] the disk is full: {why}", flush=True)
        signal.raise_signal(signal.SIGINT)  # Tune's own Ctrl-C: save, stop, keep trials open

    def check(self) -> None:
        """After the run: raise the one line when the guard stopped it."""
        if self.full:
            raise OutputError(self.full)
