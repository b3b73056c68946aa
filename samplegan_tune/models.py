"""The networks: context autoencoder, seeded generator, segment and sequence discriminators.

Every module is built from a `TrainConfig` alone. Discriminators return `(logits, features)`
where `logits` is a list (one entry per sub-discriminator) and `features` the flat list of
their intermediate feature maps, for feature matching.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from samplegan_tune.config import TrainConfig

_SLOPE = 0.2  # LeakyReLU slope used throughout (WaveGAN / MelGAN practice)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _SLOPE)


def _normed(module: nn.Module, norm: str) -> nn.Module:
    if norm == "spectral":
        return parametrizations.spectral_norm(module)
    if norm == "weight":
        return parametrizations.weight_norm(module)
    return module


def context_rms(context: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, 1) root-mean-square level, floored so silence does not divide by zero."""
    return context.float().pow(2).mean(dim=-1, keepdim=True).add(1e-8).sqrt()


class ContextAutoencoder(nn.Module):
    """Strided-conv autoencoder over the context window: (B, C) -> latent (B, L), recon (B, C)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        widths = [min(cfg.ae_channels * 2**i, cfg.ae_channels * 8) for i in range(cfg.ae_depth)]
        self.context = cfg.context
        self.bottom_len = math.ceil(cfg.context / 4**cfg.ae_depth)
        self.bottom_ch = widths[-1]
        ins = [1, *widths[:-1]]
        self.down = nn.ModuleList(
            nn.Conv1d(i, o, kernel_size=8, stride=4, padding=2)
            for i, o in zip(ins, widths, strict=True)
        )
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
            h = _act(conv(_pad_to_multiple(h, 4)))
        h = _fit_length(h, self.bottom_len)
        return self.to_latent(h.flatten(1))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, C)."""
        h = self.from_latent(latent).view(-1, self.bottom_ch, self.bottom_len)
        for conv in self.up:
            h = _act(conv(h))
        return torch.tanh(_fit_length(self.out(h), self.context)).squeeze(1)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encode(context)
        return latent, self.decode(latent)


class Generator(nn.Module):
    """Seed vector -> the next S + crossfade samples.

    With `gain_mode="context"` the network emits a unit-level waveform shape plus a gain in dB,
    bounded by `max_gain_db`, relative to an anchor level: the RMS of the real context a
    rollout started from. A rollout therefore can neither fade into silence nor blow up (the
    seed paper's "transient, then a stagnant waveform"); a level measured on the model's own
    output instead would feed every small bias back and compound it over hundreds of steps.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_len = cfg.segment + cfg.crossfade
        self.base_len = math.ceil(self.out_len / cfg.g_upsample**cfg.g_depth)
        widths = [max(cfg.g_channels // 2**i, 16) for i in range(cfg.g_depth + 1)]
        seed_dim = cfg.latent
        if cfg.seed_source == "reconstruction":
            self.reader = _Reader(cfg)
        self.fc = nn.Linear(seed_dim + cfg.noise_dim, widths[0] * self.base_len)
        self.blocks = nn.ModuleList(
            _UpBlock(widths[i], widths[i + 1], cfg.g_upsample) for i in range(cfg.g_depth)
        )
        self.out = nn.Conv1d(widths[-1], 1, kernel_size=7, padding=3)
        # Gain head sees the seed and how far the current context has drifted from the anchor.
        self.gain = nn.Linear(seed_dim + 1, 1)
        self.widths = widths

    def seed(self, latent: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """The seed vector (B, L) from the autoencoder's latent or its reconstruction."""
        if self.cfg.seed_source == "reconstruction":
            return self.reader(recon)
        return latent

    def forward(
        self, seed: torch.Tensor, noise: torch.Tensor, anchor: torch.Tensor, drift: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """seed (B, L), noise (B, noise_dim), anchor (B, 1) level of the rollout's first
        context, drift (B, 1) log10 of the current context level over the anchor ->
        waveform (B, S + crossfade) and gain_db (B, 1), its level relative to `anchor`.

        The gain is applied detached: the sample-wise losses cannot shrink it (an uncertain L1
        prediction is best near zero); `gain_loss` trains it.
        """
        h = self.fc(torch.cat([seed, noise], dim=1)).view(-1, self.widths[0], self.base_len)
        for block in self.blocks:
            h = block(h)
        shape = torch.tanh(self.out(_act(h))[:, 0, : self.out_len])
        if self.cfg.gain_mode == "free":
            return shape, torch.zeros_like(anchor)
        shape = shape / context_rms(shape).to(shape.dtype)
        raw = self.gain(torch.cat([seed, drift.to(seed.dtype)], dim=1)).float()
        gain_db = self.cfg.max_gain_db * torch.tanh(raw)
        scale = anchor * torch.pow(10.0, gain_db.detach() / 20)
        return torch.clamp(shape * scale.to(shape.dtype), -1.0, 1.0), gain_db


class _Reader(nn.Module):
    """Reads the autoencoder's reconstruction (B, C) into a seed vector (B, L)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.encoder = ContextAutoencoder(cfg)

    def forward(self, recon: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(recon)


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, factor: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(c_in, c_out, 2 * factor, stride=factor, padding=factor // 2)
        self.res = nn.ModuleList(
            nn.Conv1d(c_out, c_out, 3, padding=d, dilation=d) for d in (1, 3, 9)
        )
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _fit_length(self.up(_act(x)), x.shape[-1] * self.factor)
        for conv in self.res:
            h = h + conv(_act(h))
        return h


class ContinuationModel(nn.Module):
    """Autoencoder + generator: a context window in, the next segment (+ crossfade tail) out."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.ae = ContextAutoencoder(cfg)
        self.g = Generator(cfg)

    def forward(
        self, context: torch.Tensor, noise: torch.Tensor, anchor: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """context (B, C), noise (B, noise_dim), anchor (B, 1) the level the rollout started at
        (default: this context's) -> dict with "fake" (B, S + crossfade), "gain_db" (B, 1)
        (see Generator), "latent" (B, L), "ae_in" (B, C) the autoencoder's input (the context
        scaled to unit level when gain_mode="context") and "recon" (B, C) its output."""
        level = context_rms(context)
        anchor = level if anchor is None else anchor
        ae_in = context / level if self.cfg.gain_mode == "context" else context
        latent, recon = self.ae(ae_in)
        drift = torch.log10(level / anchor)
        fake, gain_db = self.g(self.g.seed(latent, recon), noise, anchor, drift)
        return {"fake": fake, "gain_db": gain_db, "latent": latent, "ae_in": ae_in, "recon": recon}


class SegmentDiscriminator(nn.Module):
    """One conv discriminator over (B, T) audio, optionally conditioned on a latent (B, L)."""

    def __init__(self, cfg: TrainConfig, in_channels: int = 1) -> None:
        super().__init__()
        widths = [min(cfg.d_channels * 2**i, 512) for i in range(cfg.d_depth)]
        ins = [in_channels, *widths[:-1]]
        self.convs = nn.ModuleList(
            _normed(
                nn.Conv1d(i, o, 15 if n == 0 else 9, stride=1 if n == 0 else 4, padding=4),
                cfg.d_norm,
            )
            for n, (i, o) in enumerate(zip(ins, widths, strict=True))
        )
        self.post = _normed(nn.Conv1d(widths[-1], 1, 3, padding=1), cfg.d_norm)
        self.project = nn.Linear(cfg.latent, widths[-1]) if cfg.d_context else None
        self.shuffle = cfg.phase_shuffle

    def forward(
        self, x: torch.Tensor, latent: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, T) or (B, K, T') -> logits (B, T''), feature maps."""
        h = x.unsqueeze(1) if x.dim() == 2 else x
        features = []
        for n, conv in enumerate(self.convs):
            h = _act(conv(h))
            features.append(h)
            if self.shuffle and self.training and n < len(self.convs) - 1:
                h = phase_shuffle(h, self.shuffle)
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
        self, x: torch.Tensor, latent: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """x (B, T) -> (per-sub logits, all feature maps)."""
        logits, features = [], []
        for i, sub in enumerate(self.subs):
            out, feats = sub(self._view(x, i), latent)
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


def phase_shuffle(x: torch.Tensor, radius: int) -> torch.Tensor:
    """WaveGAN phase shuffle: shift (B, C, T) by a random -radius..radius, reflect-padded."""
    shift = int(torch.randint(-radius, radius + 1, ()).item())
    if shift == 0 or x.shape[-1] <= abs(shift):
        return x
    if shift > 0:
        return F.pad(x[..., :-shift], (shift, 0), mode="reflect")
    return F.pad(x[..., -shift:], (0, -shift), mode="reflect")


def _pad_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    pad = (-x.shape[-1]) % k
    return F.pad(x, (0, pad)) if pad else x


def _fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad the last dim to `length`."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return F.pad(x, (0, length - x.shape[-1]))
