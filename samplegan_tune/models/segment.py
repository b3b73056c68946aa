"""The segment family (the seed's design): a context autoencoder whose latent seeds a
generator that emits the next segment of samples directly."""

from __future__ import annotations

import math

import torch
from torch import nn

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.family import Levels, ModelFamily, Step
from samplegan_tune.models.layers import (
    FilmResidual,
    act,
    encoder_convs,
    fit_length,
    pad_to_multiple,
)
from samplegan_tune.models.level import LevelRule


class ContextAutoencoder(nn.Module):
    """Strided-conv autoencoder over the context window: (B, C) -> latent (B, L), recon (B, C)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        widths, self.down = encoder_convs(cfg)
        self.context = cfg.context
        self.bottom_len = math.ceil(cfg.context / 4**cfg.ae_depth)
        self.bottom_ch = widths[-1]
        ins = [1, *widths[:-1]]
        flat = self.bottom_ch * self.bottom_len
        self.to_latent = nn.Linear(flat, cfg.latent)
        self.from_latent = nn.Linear(cfg.latent, flat)
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(o, i if i > 1 else widths[0], kernel_size=8, stride=4, padding=2)
            for i, o in reversed(list(zip(ins, widths, strict=True)))
        )
        self.out = nn.Conv1d(widths[0], 1, kernel_size=7, padding=3)

    def encode(self, context: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, L)."""
        h = context.unsqueeze(1)
        for conv in self.down:
            h = act(conv(pad_to_multiple(h, 4)))
        h = fit_length(h, self.bottom_len)
        return self.to_latent(h.flatten(1))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, C)."""
        h = self.from_latent(latent).view(-1, self.bottom_ch, self.bottom_len)
        for conv in self.up:
            h = act(conv(h))
        # Linear output: a unit-RMS context has peaks well above 1, which tanh would clip.
        return fit_length(self.out(h), self.context).squeeze(1)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) context -> (latent (B, L), reconstruction (B, C))."""
        latent = self.encode(context)
        return latent, self.decode(latent)


class Generator(nn.Module):
    """Seed vector + noise -> the next S + crossfade samples, at the level `LevelRule` sets.

    The noise (and the context-noise level of augmentation) is concatenated to the seed and,
    with `noise_film`, scales and shifts every upsampling block, where it cannot be ignored.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_len = cfg.segment + cfg.crossfade
        self.base_len = math.ceil(self.out_len / cfg.g_upsample**cfg.g_depth)
        widths = [max(cfg.g_channels // 2**i, 16) for i in range(cfg.g_depth + 1)]
        seed_dim, cond_dim = cfg.latent, cfg.noise_dim + 1  # noise + context-noise level
        if cfg.seed_source == "reconstruction":
            self.reader = _Reader(cfg)
        self.fc = nn.Linear(seed_dim + cond_dim, widths[0] * self.base_len)
        film = cond_dim if cfg.noise_film else 0
        self.blocks = nn.ModuleList(
            _UpBlock(widths[i], widths[i + 1], cfg.g_upsample, film) for i in range(cfg.g_depth)
        )
        self.out = nn.Conv1d(widths[-1], 1, kernel_size=7, padding=3)
        self.level = LevelRule(cfg, seed_dim, cond_dim)
        self.widths = widths

    def seed(self, latent: torch.Tensor, recon: torch.Tensor | None) -> torch.Tensor:
        """The seed vector (B, L) from the autoencoder's latent or its reconstruction."""
        if self.cfg.seed_source == "reconstruction":
            return self.reader(recon)
        return latent

    def forward(
        self,
        seed: torch.Tensor,
        noise: torch.Tensor,
        anchor: torch.Tensor,
        drift: torch.Tensor,
        noise_level: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """seed (B, L), noise (B, noise_dim), anchor (B, 1) and drift (B, 1) (see LevelRule),
        noise_level (B, 1) the relative noise added to the context (default 0) ->
        waveform (B, S + crossfade) and gain_db (B, 1)."""
        if noise_level is None:
            noise_level = torch.zeros_like(anchor)
        cond = torch.cat([noise, noise_level.to(noise.dtype)], dim=1)  # (B, noise_dim + 1)
        h = self.fc(torch.cat([seed, cond.to(seed.dtype)], dim=1))
        h = h.view(-1, self.widths[0], self.base_len)
        for block in self.blocks:
            h = block(h, cond)
        raw = torch.tanh(self.out(act(h))[:, 0, : self.out_len])
        return self.level(raw, seed, cond, anchor, drift)


class _Reader(nn.Module):
    """Reads the autoencoder's reconstruction (B, C) into a seed vector (B, L)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.encoder = ContextAutoencoder(cfg)

    def forward(self, recon: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(recon)


class _UpBlock(FilmResidual):
    """Transposed-conv upsampling, then FiLM (when film > 0) and dilated residual convs."""

    def __init__(self, c_in: int, c_out: int, factor: int, film: int = 0) -> None:
        super().__init__(c_out, film, dilations=(1, 3, 9))
        self.up = nn.ConvTranspose1d(c_in, c_out, 2 * factor, stride=factor, padding=factor // 2)
        self.factor = factor

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T), cond (B, D) -> (B, C_out, T * factor)."""
        h = fit_length(self.up(act(x)), x.shape[-1] * self.factor)
        return super().forward(h, cond)


class ContinuationModel(ModelFamily):
    """Autoencoder + generator: a context window in, the next segment (+ crossfade tail) out.
    Every part trains at every step (ae_pretrain_steps only skips G's updates)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.ae = ContextAutoencoder(cfg)
        self.g = Generator(cfg)

    def _continue(
        self, ae_in: torch.Tensor, noise: torch.Tensor, levels: Levels, recon: bool
    ) -> Step:
        latent = self.ae.encode(ae_in)
        needed = recon or self.cfg.seed_source == "reconstruction"
        decoded = self.ae.decode(latent) if needed else None
        seed = self.g.seed(latent, decoded)
        fake, gain_db = self.g(seed, noise, levels.anchor, levels.drift, levels.noise_level)
        return Step(fake, gain_db, latent, ae_in, decoded if recon else None)
