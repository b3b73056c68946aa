"""The model families behind one interface (`ModelFamily`): `build_model(cfg)` returns a
module that maps (context, noise, anchor, noise_level) to the next step (a `Step`), with
`.ae` (its autoencoder), `.g` (its generator), `.level` (the level rule),
`.parameter_groups()` and `.stage(step)` (what trains at a step).

- "segment": the seed's design, a generator emitting samples seeded by a context latent;
- "latent": a frame autoencoder and a generator continuing the latent frame sequence.
"""

from __future__ import annotations

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.discriminators import (
    Discriminator,
    SegmentDiscriminator,
    build_discriminators,
    phase_shuffle,
)
from samplegan_tune.models.family import ModelFamily, Step
from samplegan_tune.models.latent import LatentModel
from samplegan_tune.models.layers import augment_context, context_rms
from samplegan_tune.models.level import LevelRule
from samplegan_tune.models.segment import ContinuationModel


def build_model(cfg: TrainConfig) -> ModelFamily:
    """The model of `cfg.model_family`, freshly initialised."""
    return LatentModel(cfg) if cfg.model_family == "latent" else ContinuationModel(cfg)


__all__ = [
    "ContinuationModel",
    "Discriminator",
    "LatentModel",
    "LevelRule",
    "ModelFamily",
    "SegmentDiscriminator",
    "Step",
    "augment_context",
    "build_discriminators",
    "build_model",
    "context_rms",
    "phase_shuffle",
]
