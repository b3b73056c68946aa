"""The discriminators: segment D (single, multi-scale, multi-period) and the sequence D.

Discriminators return `(logits, features)` where `logits` is a list (one entry per
sub-discriminator) and `features` the flat list of their intermediate feature maps, for
feature matching. Both model families are judged on audio by these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.layers import act, normed


class SegmentDiscriminator(nn.Module):
    """One conv discriminator over (B, T) audio, optionally conditioned on a latent (B, L)."""

    def __init__(self, cfg: TrainConfig, in_channels: int = 1) -> None:
        super().__init__()
        widths = [min(cfg.d_channels * 2**i, 512) for i in range(cfg.d_depth)]
        ins = [in_channels, *widths[:-1]]
        self.convs = nn.ModuleList(
            normed(
                nn.Conv1d(i, o, 15 if n == 0 else 9, stride=1 if n == 0 else 4, padding=4),
                cfg.d_norm,
            )
            for n, (i, o) in enumerate(zip(ins, widths, strict=True))
        )
        self.post = normed(nn.Conv1d(widths[-1], 1, 3, padding=1), cfg.d_norm)
        self.project = nn.Linear(cfg.latent, widths[-1]) if cfg.d_context else None
        self.shuffle = cfg.phase_shuffle

    def forward(
        self,
        x: torch.Tensor,
        latent: torch.Tensor | None = None,
        shifts: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, T) or (B, K, T') -> logits (B, T''), feature maps. In training, phase shuffle
        (when on) draws its shifts from `shifts`, which it then needs."""
        h = x.unsqueeze(1) if x.dim() == 2 else x
        features = []
        shuffle = self.shuffle if self.training else 0
        if shuffle and shifts is None:
            raise ValueError("phase shuffle in training needs a generator for its shifts")
        for n, conv in enumerate(self.convs):
            h = act(conv(h))
            features.append(h)
            if shuffle and n < len(self.convs) - 1:
                h = phase_shuffle(h, shuffle, shifts)
        logits = self.post(h).squeeze(1)
        if self.project is not None and latent is not None:
            # Projection discriminator: inner product of features with the embedded condition.
            cond = (self.project(latent).unsqueeze(-1) * h).sum(dim=1)
            logits = logits + cond / math.sqrt(h.shape[1])
        return logits, features


class Discriminator(nn.Module):
    """The segment discriminator family: single, multi-scale (pooled) or multi-period."""

    PERIODS = (2, 3, 5)
    SCALES = 3

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.kind = cfg.d_kind
        if cfg.d_kind == "multiperiod":
            in_channels = list(self.PERIODS)
        else:
            in_channels = [1] * (self.SCALES if cfg.d_kind == "multiscale" else 1)
        self.subs = nn.ModuleList(SegmentDiscriminator(cfg, c) for c in in_channels)

    def forward(
        self,
        x: torch.Tensor,
        latent: torch.Tensor | None = None,
        shifts: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """x (B, T) -> (per-sub logits, all feature maps); `shifts` as `SegmentDiscriminator`'s,
        drawn by each sub-discriminator in turn."""
        logits, features = [], []
        for i, sub in enumerate(self.subs):
            out, feats = sub(self._view(x, i), latent, shifts)
            logits.append(out)
            features.extend(feats)
        return logits, features

    def _view(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if self.kind == "multiscale":
            return F.avg_pool1d(x.unsqueeze(1), 2**i, 2**i) if i else x
        if self.kind == "multiperiod":
            period = self.PERIODS[i]
            pad = (-x.shape[-1]) % period
            x = F.pad(x.unsqueeze(1), (0, pad), mode="reflect").squeeze(1) if pad else x
            # (B, T) -> (B, period, T / period): each channel one phase of the period.
            return x.view(x.shape[0], -1, period).transpose(1, 2)
        return x


def build_discriminators(cfg: TrainConfig) -> tuple[Discriminator, SegmentDiscriminator | None]:
    """The segment D and, when the sequence loss is on, a D over stitched rollouts."""
    sequence = None
    if cfg.lambda_seq_adv > 0 and cfg.rollout_steps > 1:
        sequence = SegmentDiscriminator(cfg.replace(d_context=False))
    return Discriminator(cfg), sequence


def phase_shuffle(x: torch.Tensor, radius: int, generator: torch.Generator) -> torch.Tensor:
    """WaveGAN phase shuffle: shift (B, C, T) by a random -radius..radius drawn from
    `generator` (one draw per call, whatever the shift), reflect-padded."""
    shift = int(torch.randint(-radius, radius + 1, (), generator=generator))
    if shift == 0 or x.shape[-1] <= 2 * abs(shift):  # reflect needs pad < what is left
        return x
    if shift > 0:
        return F.pad(x[..., :-shift], (shift, 0), mode="reflect")
    return F.pad(x[..., -shift:], (0, -shift), mode="reflect")
