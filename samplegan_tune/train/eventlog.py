"""TensorBoard event files (tensorboardX): scalars, rollout audio and spectrogram images.

tensorboardX writes from a thread of its own: a full disk there would print that thread's
traceback and let training go on without its log. `EventLog` turns it (and a refused write
of its own) into an OutputError naming the folder, raised by its next call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tensorboardX import SummaryWriter

from samplegan_tune.audio.sound import mel_db
from samplegan_tune.core.errors import OutputError
from samplegan_tune.core.fileio import writing

_WRITER_THREAD = "_EventLoggerThread"  # tensorboardX's writing thread
_refused: dict[threading.Thread, OSError] = {}  # such a thread -> the error that ended it
_previous_hook = threading.excepthook


def _keep_writer_errors(args: threading.ExceptHookArgs) -> None:
    """A write refused in tensorboardX's thread is kept for its EventLog, not printed."""
    if type(args.thread).__name__ == _WRITER_THREAD and isinstance(args.exc_value, OSError):
        _refused[args.thread] = args.exc_value
        return
    _previous_hook(args)


threading.excepthook = _keep_writer_errors


class EventLog:
    """A thin writer over one TensorBoard run folder."""

    def __init__(self, folder: str | Path, sample_rate: int, filename_suffix: str = "") -> None:
        self.folder = Path(folder)
        with writing(self.folder):
            self.writer = SummaryWriter(str(folder), filename_suffix=filename_suffix)
        self.sample_rate = sample_rate

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        """Write each metric as a scalar at `step`."""
        with self._writing():
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)

    def audio(self, tag: str, clip: torch.Tensor, step: int) -> None:
        """clip (T,): written as audio and as a log-mel spectrogram image."""
        clip = clip.detach().float().cpu().clamp(-1, 1)
        image = spectrogram_image(clip, self.sample_rate)
        with self._writing():
            self.writer.add_audio(tag, clip.numpy(), step, sample_rate=self.sample_rate)
            self.writer.add_image(f"{tag}_spectrogram", image, step, dataformats="HW")

    def flush(self) -> None:
        """Write the pending events to disk."""
        with self._writing():
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the writer."""
        with self._writing():
            self.writer.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A refused write, here or in the writer's thread: OutputError naming the folder.
        Checked before as well: a dead writer thread no longer empties the queue."""
        self._raise_refused()
        with writing(self.folder):
            yield
        self._raise_refused()

    def _raise_refused(self) -> None:
        for thread in self._threads():
            if thread in _refused:
                err = _refused.pop(thread)
                raise OutputError(f"{self.folder}: cannot write TensorBoard events ({err})")

    def _threads(self) -> list[threading.Thread]:
        writers = self.writer.all_writers.values() if self.writer.all_writers else []
        return [w.event_writer._worker for w in writers if w.event_writer._worker is not None]


def spectrogram_image(clip: torch.Tensor, sample_rate: int) -> np.ndarray:
    """(T,) audio -> (n_mels, frames) image in [0, 1], low frequencies at the bottom."""
    db = mel_db(clip, sample_rate)
    db = db.clamp_min(db.max() - 80)
    image = (db - db.min()) / (db.max() - db.min() + 1e-9)
    return image.flip(0).numpy()
