"""The latent family (RAVE / Musika): audio <-> a sequence of latent frames, and a generator
that continues the context's frame sequence; the frozen decoder turns its frames into audio.

Stage 1 (`ae_pretrain_steps`) trains the frame autoencoder alone on reconstruction; from then
on the encoder is frozen (the generator's world no longer moves) and the decoder is either
frozen or, with `decoder_finetune`, fine-tuned by the waveform and adversarial losses of the
generated audio together with its reconstruction loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models.family import Levels, ModelFamily, Step
from samplegan_tune.models.layers import FilmResidual, act, encoder_convs, fit_length
from samplegan_tune.models.level import LevelRule

_OVERLAP = 4  # context frames decoded before the new ones, so the decoder joins them smoothly


class FrameAutoencoder(nn.Module):
    """(B, T) audio <-> (B, D, T / hop) frames in (-1, 1); hop = 4 ** ae_depth samples."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        widths, self.down = encoder_convs(cfg)
        self.hop = 4**cfg.ae_depth
        self.to_frames = nn.Conv1d(widths[-1], cfg.frame_latent, 3, padding=1)
        self.from_frames = nn.Conv1d(cfg.frame_latent, widths[-1], 3, padding=1)
        outs = [widths[0], *widths[:-1]]
        self.up = nn.ModuleList(
            _UpRes(o, i) for i, o in reversed(list(zip(outs, widths, strict=True)))
        )
        self.out = nn.Conv1d(widths[0], 1, kernel_size=7, padding=3)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, D, ceil(T / hop)); left-padded, so the last frame ends with the audio."""
        pad = (-audio.shape[-1]) % self.hop
        h = F.pad(audio, (pad, 0)).unsqueeze(1)
        for conv in self.down:
            h = act(conv(h))
        return torch.tanh(self.to_frames(h))

    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, D, N) -> (B, N * hop), linear output (unit-level audio has peaks above 1)."""
        h = self.from_frames(frames)
        for block in self.up:
            h = block(h)
        return self.out(act(h)).squeeze(1)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> frames (B, D, N), reconstruction (B, T)."""
        frames = self.encode(audio)
        return frames, self.decode(frames)[:, -audio.shape[-1] :]


class _UpRes(nn.Module):
    """×4 transposed-conv upsampling and a residual conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(c_in, c_out, kernel_size=8, stride=4, padding=2)
        self.res = nn.Conv1d(c_out, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(act(x))
        return h + self.res(act(h))


class LatentGenerator(nn.Module):
    """Context frames + noise -> the next frames, decoded to S + crossfade samples.

    Dilated convs read the context's frames into a seed vector (the last frame's features);
    the new frames grow from the seed and the noise, then residual blocks over the last
    context frames and the new ones, each modulated (FiLM) by the noise, refine them.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        width, cond_dim = cfg.g_channels, cfg.noise_dim + 1  # noise + context-noise level
        self.hop = 4**cfg.ae_depth
        self.out_len = cfg.segment + cfg.crossfade
        self.new_frames = math.ceil(self.out_len / self.hop)
        self.width = width
        self.read_in = nn.Conv1d(cfg.frame_latent, width, 3, padding=1)
        self.read = nn.ModuleList(
            nn.Conv1d(width, width, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)
        )
        self.to_seed = nn.Linear(width, cfg.latent)
        self.grow = nn.Linear(cfg.latent + cond_dim, width * self.new_frames)
        film = cond_dim if cfg.noise_film else 0
        self.blocks = nn.ModuleList(
            FilmResidual(width, film, dilations=(1, 2)) for _ in range(cfg.g_depth)
        )
        self.out = nn.Conv1d(width, cfg.frame_latent, 3, padding=1)
        self.level = LevelRule(cfg, cfg.latent, cond_dim)

    def seed(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context frames (B, D, N) -> their features (B, W, N) and the seed vector (B, L)."""
        h = self.read_in(frames)
        for conv in self.read:
            h = h + conv(act(h))
        return h, self.to_seed(h[:, :, -1])

    def forward(
        self,
        frames: torch.Tensor,
        noise: torch.Tensor,
        noise_level: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frames (B, D, N) of the context, noise (B, noise_dim), noise_level (B, 1) ->
        the new frames (B, D, K), the seed (B, L) and the conditioning (B, noise_dim + 1)."""
        cond = torch.cat([noise, noise_level.to(noise.dtype)], dim=1)
        features, seed = self.seed(frames)
        grown = self.grow(torch.cat([seed, cond.to(seed.dtype)], dim=1))
        h_new = grown.view(-1, self.width, self.new_frames)
        keep = min(_OVERLAP, features.shape[-1])
        h = torch.cat([features[:, :, -keep:], h_new], dim=2)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.out(act(h))[:, :, -self.new_frames :]), seed, cond


class LatentModel(ModelFamily):
    """Frame autoencoder + latent generator; stage 2 freezes the encoder (and the decoder
    unless `decoder_finetune`). Its step's `latent` is the generator's seed vector."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.ae = FrameAutoencoder(cfg)
        self.g = LatentGenerator(cfg)

    def stage(self, step: int) -> None:
        """Freeze what stage 2 keeps fixed once `step` reaches ae_pretrain_steps."""
        second = step >= self.cfg.ae_pretrain_steps
        self.ae.down.requires_grad_(not second)
        self.ae.to_frames.requires_grad_(not second)
        decoder = (self.ae.from_frames, self.ae.up, self.ae.out)
        for part in decoder:
            part.requires_grad_(not second or self.cfg.decoder_finetune)

    def _continue(
        self, ae_in: torch.Tensor, noise: torch.Tensor, levels: Levels, recon: bool
    ) -> Step:
        frames = self.ae.encode(ae_in)
        new, seed, cond = self.g(frames, noise, levels.noise_level)
        keep = min(_OVERLAP, frames.shape[-1])
        audio = self.ae.decode(torch.cat([frames[:, :, -keep:], new.to(frames.dtype)], dim=2))
        raw = fit_length(audio[:, keep * self.g.hop :], self.g.out_len)
        fake, gain_db = self.g.level(raw, seed, cond, levels.anchor, levels.drift)
        decoded = self.ae.decode(frames)[:, -ae_in.shape[-1] :] if recon else None
        return Step(fake, gain_db, seed, ae_in, decoded)
