"""Shared tiny configurations: short windows, few channels, so every test runs in seconds."""

from __future__ import annotations

import pytest
import torch

from samplegan_tune.config import TrainConfig

TINY = dict(
    segment=64,
    context=256,
    crossfade=16,
    latent=16,
    ae_channels=4,
    ae_depth=2,
    noise_dim=4,
    g_channels=16,
    g_depth=2,
    d_channels=4,
    d_depth=2,
    batch_size=4,
    rollout_steps=2,
    d_warmup_steps=2,
)


@pytest.fixture
def tiny() -> TrainConfig:
    return TrainConfig.from_dict(TINY)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)
