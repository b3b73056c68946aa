"""The level rule: the one place a generated step's loudness is decided and trained."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.layers import context_rms, mean_power


class LevelRule(nn.Module):
    """The one place a segment's loudness is decided, and how it is trained.

    Levels are relative to an anchor, the RMS of the real context a rollout started from; a
    level measured on the model's own output instead would feed every small bias back and
    compound it over hundreds of steps.
    - "context": G's unit-RMS waveform times a gain (±max_gain_db) predicted from the seed
      and the drift of the current context from the anchor; the gain is applied detached (an
      uncertain L1 prediction is best near zero) and regressed on the real level.
    - "learned": the gain head also reads the noise and is trained through the waveform
      losses (not detached); the loudness loss only acts beyond ±level_tolerance_db, and the
      ±max_gain_db bound is the floor that keeps a rollout from fading out.
    - "free": the waveform as G emits it, the loudness loss on its level.
    """

    def __init__(self, cfg: TrainConfig, seed_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.mode, self.max_gain_db = cfg.gain_mode, cfg.max_gain_db
        self.tolerance_db, self.segment = cfg.level_tolerance_db, cfg.segment
        if self.mode != "free":
            extra = cond_dim if self.mode == "learned" else 0
            self.head = nn.Linear(seed_dim + 1 + extra, 1)

    def prepare(
        self, context: torch.Tensor, anchor: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """context (B, C), anchor (B, 1) or None (this context's level) -> the autoencoder's
        input (B, C) (unit level unless "free"), the anchor (B, 1) and the drift (B, 1),
        log10 of the context's level over the anchor."""
        level = context_rms(context)
        anchor = level if anchor is None else anchor
        ae_in = context if self.mode == "free" else context / level.to(context.dtype)
        return ae_in, anchor, torch.log10(level / anchor)

    def forward(
        self,
        raw: torch.Tensor,
        seed: torch.Tensor,
        cond: torch.Tensor,
        anchor: torch.Tensor,
        drift: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """raw (B, T) G's waveform in (-1, 1), seed (B, L), cond (B, D) noise + noise level ->
        the segment (B, T) and gain_db (B, 1), its level relative to the anchor."""
        if self.mode == "free":
            return raw, torch.zeros_like(anchor)
        shape = raw / context_rms(raw).to(raw.dtype)
        inputs = [seed, drift.to(seed.dtype)]
        if self.mode == "learned":
            inputs.append(cond.to(seed.dtype))
        gain_db = self.max_gain_db * torch.tanh(self.head(torch.cat(inputs, dim=1)).float())
        gain = gain_db.detach() if self.mode == "context" else gain_db
        scale = anchor * torch.pow(10.0, gain / 20)
        return torch.clamp(shape * scale.to(shape.dtype), -1.0, 1.0), gain_db

    def loss(
        self, fake: torch.Tensor, gain_db: torch.Tensor, anchor: torch.Tensor, real: torch.Tensor
    ) -> torch.Tensor:
        """fake (N, T) segments, gain_db (N, 1), anchor (N, 1), real (N, S) targets -> the
        level loss (dB / 20)."""
        if self.mode == "context":
            return gain_loss(gain_db, anchor, real, self.max_gain_db)
        return loudness_gap(fake[:, : self.segment], real, self.tolerance_db)


def loudness_gap(fake: torch.Tensor, real: torch.Tensor, tolerance_db: float = 0.0) -> torch.Tensor:
    """Mean absolute difference of per-example RMS level in dB (so decay costs linearly),
    /20; gaps within ±tolerance_db cost nothing, so the level may vary that much."""
    gap = (level_db(fake) - level_db(real)).abs()
    return F.relu(gap - tolerance_db).mean() / 20.0


def gain_loss(
    gain_db: torch.Tensor, anchor: torch.Tensor, real: torch.Tensor, max_gain_db: float
) -> torch.Tensor:
    """L1 in dB/20 between the predicted gain (B, 1) and the real segment's (B, T) level
    relative to the anchor level (B, 1), clipped to the reachable ±max_gain_db."""
    target = level_db(real)[:, None] - 20 * torch.log10(anchor.float())
    return (gain_db.float() - target.clamp(-max_gain_db, max_gain_db)).abs().mean() / 20.0


def level_db(x: torch.Tensor) -> torch.Tensor:
    """Level in dB of each clip: mean square over the last dim, floored at -80 dB."""
    return 10.0 * torch.log10(mean_power(x))
