"""Building blocks every model family shares: activation, norms, lengths, context levels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from samplegan_tune.core.config import TrainConfig

_SLOPE = 0.2  # LeakyReLU slope used throughout (WaveGAN / MelGAN practice)


def act(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU with the slope used throughout (0.2)."""
    return F.leaky_relu(x, _SLOPE)


def normed(module: nn.Module, norm: str) -> nn.Module:
    """`module` under spectral or weight normalisation, as `norm` says ("none": as it is)."""
    if norm == "spectral":
        return parametrizations.spectral_norm(module)
    if norm == "weight":
        return parametrizations.weight_norm(module)
    return module


POWER_FLOOR = 1e-8  # added to a mean square before a root or a log: the models' silence, -80 dB


def mean_power(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """(..., T) -> (...) mean square over the last dim plus `POWER_FLOOR` (the models' one
    level floor: `context_rms` and `level.level_db` both read it)."""
    return x.float().pow(2).mean(dim=-1, keepdim=keepdim) + POWER_FLOOR


def context_rms(context: torch.Tensor) -> torch.Tensor:
    """(B, C) -> (B, 1) root-mean-square level, floored so silence does not divide by zero."""
    return mean_power(context, keepdim=True).sqrt()


def augment_context(
    context: torch.Tensor, noise_level: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Context noise augmentation (GameNGen): context (B, C) + Gaussian noise whose RMS is
    noise_level (B, 1) times the context's own RMS; the noise is drawn from `generator`."""
    noise = torch.randn(context.shape, generator=generator).to(context.device, context.dtype)
    return context + noise * (noise_level * context_rms(context)).to(context.dtype)


def encoder_convs(cfg: TrainConfig) -> tuple[list[int], nn.ModuleList]:
    """The autoencoder trunk both families share: ae_depth strided convs (×4 down each), from
    one channel to widths doubling from ae_channels (at most 8×). Returns the widths too."""
    widths = [min(cfg.ae_channels * 2**i, cfg.ae_channels * 8) for i in range(cfg.ae_depth)]
    ins = [1, *widths[:-1]]
    convs = nn.ModuleList(
        nn.Conv1d(i, o, kernel_size=8, stride=4, padding=2)
        for i, o in zip(ins, widths, strict=True)
    )
    return widths, convs


def pad_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    """Zero-pad the last dim on the right to a multiple of `k`."""
    pad = (-x.shape[-1]) % k
    return F.pad(x, (0, pad)) if pad else x


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad the last dim to `length`."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return F.pad(x, (0, length - x.shape[-1]))


class FilmResidual(nn.Module):
    """(B, C, T) scaled and shifted by a Linear of `cond` (FiLM, when film > 0: where noise
    cannot be ignored), then dilated residual convs."""

    def __init__(self, channels: int, film: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.res = nn.ModuleList(
            nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in dilations
        )
        self.film = nn.Linear(film, 2 * channels) if film else None

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """`h` (B, C, T) scaled and shifted by `cond` (when FiLM is on), then the residual convs."""
        if self.film is not None:
            scale, shift = self.film(cond.to(h.dtype)).unsqueeze(-1).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        for conv in self.res:
            h = h + conv(act(h))
        return h
