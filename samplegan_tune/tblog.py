"""TensorBoard event files (tensorboardX): scalars, rollout audio and spectrogram images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio
from tensorboardX import SummaryWriter


class EventLog:
    """A thin writer over one TensorBoard run folder."""

    def __init__(self, folder: str | Path, sample_rate: int, filename_suffix: str = "") -> None:
        self.writer = SummaryWriter(str(folder), filename_suffix=filename_suffix)
        self.sample_rate = sample_rate
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=1024, hop_length=256, n_mels=80
        )

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def audio(self, tag: str, clip: torch.Tensor, step: int) -> None:
        """clip (T,): written as audio and as a log-mel spectrogram image."""
        clip = clip.detach().float().cpu().clamp(-1, 1)
        self.writer.add_audio(tag, clip.numpy(), step, sample_rate=self.sample_rate)
        self.writer.add_image(
            f"{tag}_spectrogram", spectrogram_image(clip, self.mel), step, dataformats="HW"
        )

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def spectrogram_image(clip: torch.Tensor, mel: torch.nn.Module) -> np.ndarray:
    """(T,) audio -> (n_mels, frames) image in [0, 1], low frequencies at the bottom."""
    db = 10 * torch.log10(mel(clip) + 1e-10)
    db = db.clamp_min(db.max() - 80)
    image = (db - db.min()) / (db.max() - db.min() + 1e-9)
    return image.flip(0).numpy()
