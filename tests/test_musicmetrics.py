from __future__ import annotations

import pytest
import torch
import torchaudio

from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.judge.musicmetrics import MUSIC_FD, TAG_KL, MusicReference, music_metrics
from samplegan_tune.judge.musicnn import MusicEmbedding

RATE = 16000


@pytest.fixture(scope="module")
def net() -> MusicEmbedding:
    return MusicEmbedding.load()


@pytest.fixture(scope="module")
def music() -> torch.Tensor:
    """(12, 4 s) clips of the built-in synthetic songs."""
    songs = [s for seed in range(2) for _, s in synthetic_songs(30.0, RATE, seed=seed)]
    size = 4 * RATE
    return torch.stack([s[i : i + size] for s in songs for i in range(0, 6 * size, size)])


def test_music_is_nearer_to_music_than_noise_or_a_drone(net, music) -> None:
    reference = MusicReference.from_clips(net, music[0::2], hop_seconds=0.5)
    same, _ = music_metrics(net, music[1::2], reference, RATE)
    level = music[1::2].pow(2).mean(1, keepdim=True).sqrt()
    noise = torch.randn(6, music.shape[1], generator=torch.Generator().manual_seed(0)) * level
    t = torch.arange(music.shape[1]) / RATE
    drone = 0.1 * sum(torch.sin(2 * torch.pi * 110 * k * t) / k for k in (1, 2, 3)).repeat(6, 1)
    for other in (noise, drone):
        far, reasons = music_metrics(net, other, reference, RATE)
        assert not reasons
        assert far[MUSIC_FD] > 2 * same[MUSIC_FD]
        assert far[TAG_KL] > 2 * same[TAG_KL]


def test_the_same_set_has_no_tag_divergence(net, music) -> None:
    reference = MusicReference.from_clips(net, music, hop_seconds=0.5)
    values, _ = music_metrics(net, music, reference, RATE)
    assert values[TAG_KL] == pytest.approx(0.0, abs=1e-9)


def test_short_clips_are_unavailable_and_other_rates_resampled(net, music) -> None:
    reference = MusicReference.from_clips(net, music, hop_seconds=1.0)
    values, reasons = music_metrics(net, music[:, : 2 * RATE], reference, RATE)
    assert values == {MUSIC_FD: None, TAG_KL: None} and "3-s patch" in reasons[MUSIC_FD]
    same, _ = music_metrics(net, music[1::2], reference, RATE)
    faster = torchaudio.functional.resample(music[1::2], RATE, 22050)
    resampled, _ = music_metrics(net, faster, reference, 22050)  # the same music at 22.05 kHz
    for name in (MUSIC_FD, TAG_KL):
        assert resampled[name] == pytest.approx(same[name], rel=0.05, abs=1e-3), name
