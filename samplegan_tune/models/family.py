"""The interface every model family implements: what one generation step returns (`Step`)
and what the trainer may ask of a model (`ModelFamily`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.level import LevelRule


@dataclass
class Step:
    """One generation step of a batch of B contexts of C samples.

    Attributes:
        fake: (B, S + crossfade) the next segment and the tail the next step fades into.
        gain_db: (B, 1) its level relative to the anchor (see `LevelRule`).
        latent: (B, L) the seed vector the generator grew it from (what D is conditioned on).
        ae_in: (B, C) the autoencoder's input: the context as the level rule scales it.
        recon: (B, C) the autoencoder's reconstruction of `ae_in`, when it was asked for.
    """

    fake: torch.Tensor
    gain_db: torch.Tensor
    latent: torch.Tensor
    ae_in: torch.Tensor
    recon: torch.Tensor | None = None


@dataclass
class Levels:
    """What conditions a step besides the context (each (B, 1)): the anchor level the rollout
    started at, the drift of this context from it (`LevelRule.prepare`), and the relative
    noise `augment_context` added to the context."""

    anchor: torch.Tensor
    drift: torch.Tensor
    noise_level: torch.Tensor


class ModelFamily(nn.Module):
    """An autoencoder `ae` and a generator `g` whose `level` rule sets each step's loudness.

    A family implements `stage` (what trains at a step) and `_continue` (the step after a
    context the level rule has prepared); `forward` is the same for all.
    """

    ae: nn.Module
    g: nn.Module

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def level(self) -> LevelRule:
        """The level rule: how loud each step is, and its loss."""
        return self.g.level

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The generator's and the autoencoder's parameters, which train at different rates."""
        return {"g": list(self.g.parameters()), "ae": list(self.ae.parameters())}

    def stage(self, step: int) -> None:
        """Freeze or thaw parts for training step `step` (every part trains by default)."""

    def forward(
        self,
        context: torch.Tensor,
        noise: torch.Tensor,
        anchor: torch.Tensor | None = None,
        noise_level: torch.Tensor | None = None,
        with_recon: bool = True,
    ) -> Step:
        """One step after each context.

        Args:
            context: (B, C) the audio before the step.
            noise: (B, noise_dim) the generator's noise.
            anchor: (B, 1) the level the rollout started at (default: this context's).
            noise_level: (B, 1) the relative noise `augment_context` added to the context
                (default 0).
            with_recon: also return the autoencoder's reconstruction (its decoder then runs
                even where the generator does not read it).
        """
        ae_in, anchor, drift = self.level.prepare(context, anchor)
        if noise_level is None:
            noise_level = torch.zeros_like(anchor)
        return self._continue(ae_in, noise, Levels(anchor, drift, noise_level), with_recon)

    def _continue(
        self, ae_in: torch.Tensor, noise: torch.Tensor, levels: Levels, recon: bool
    ) -> Step:
        """The family's step after `ae_in` (the context as the level rule scaled it)."""
        raise NotImplementedError
