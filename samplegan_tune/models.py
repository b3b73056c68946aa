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

from samplegan_tune import losses
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


def augment_context(
    context: torch.Tensor, noise_level: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Context noise augmentation (GameNGen): context (B, C) + Gaussian noise whose RMS is
    noise_level (B, 1) times the context's own RMS; the noise is drawn from `generator`."""
    noise = torch.randn(context.shape, generator=generator).to(context.device, context.dtype)
    return context + noise * (noise_level * context_rms(context)).to(context.dtype)


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
            return losses.gain_loss(gain_db, anchor, real, self.max_gain_db)
        return losses.loudness_gap(fake[:, : self.segment], real, self.tolerance_db)


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
        # Linear output: a unit-RMS context has peaks well above 1, which tanh would clip.
        return _fit_length(self.out(h), self.context).squeeze(1)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    def seed(self, latent: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
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
        raw = torch.tanh(self.out(_act(h))[:, 0, : self.out_len])
        return self.level(raw, seed, cond, anchor, drift)


class _Reader(nn.Module):
    """Reads the autoencoder's reconstruction (B, C) into a seed vector (B, L)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.encoder = ContextAutoencoder(cfg)

    def forward(self, recon: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(recon)


class _UpBlock(nn.Module):
    """Transposed-conv upsampling + dilated residual convs; FiLM from `cond` when film > 0."""

    def __init__(self, c_in: int, c_out: int, factor: int, film: int = 0) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(c_in, c_out, 2 * factor, stride=factor, padding=factor // 2)
        self.res = nn.ModuleList(
            nn.Conv1d(c_out, c_out, 3, padding=d, dilation=d) for d in (1, 3, 9)
        )
        self.film = nn.Linear(film, 2 * c_out) if film else None
        self.factor = factor

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T), cond (B, D) -> (B, C_out, T * factor)."""
        h = _fit_length(self.up(_act(x)), x.shape[-1] * self.factor)
        if self.film is not None:
            scale, shift = self.film(cond.to(h.dtype)).unsqueeze(-1).chunk(2, dim=1)
            h = h * (1 + scale) + shift
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
        self,
        context: torch.Tensor,
        noise: torch.Tensor,
        anchor: torch.Tensor | None = None,
        noise_level: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """context (B, C), noise (B, noise_dim), anchor (B, 1) the level the rollout started at
        (default: this context's), noise_level (B, 1) the relative noise `augment_context`
        added to the context (default 0) -> dict with "fake" (B, S + crossfade), "gain_db"
        (B, 1) (see LevelRule), "latent" (B, L), "ae_in" (B, C) the autoencoder's input (the
        context as the level rule scales it) and "recon" (B, C) its output."""
        ae_in, anchor, drift = self.g.level.prepare(context, anchor)
        latent, recon = self.ae(ae_in)
        seed = self.g.seed(latent, recon)
        fake, gain_db = self.g(seed, noise, anchor, drift, noise_level)
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
    """WaveGAN phase shuffle: shift (B, C, T) by a random -radius..radius, reflect-padded.

    One draw from torch's global CPU generator per call, whatever the shift: replaying that
    generator's state replays the shifts (the trainer's feature matching relies on it).
    """
    shift = int(torch.randint(-radius, radius + 1, ()).item())
    if shift == 0 or x.shape[-1] <= 2 * abs(shift):  # reflect needs pad < what is left
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
