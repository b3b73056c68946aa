"""Loss functions, pure and small: adversarial variants, feature matching, reconstruction.

Logits come as lists (one tensor per sub-discriminator); each function averages over them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Logits = Sequence[torch.Tensor]


def d_loss(kind: str, real: Logits, fake: Logits) -> torch.Tensor:
    """Discriminator loss for `kind` in ns | hinge | lsgan | wgan-gp (penalty added apart)."""
    parts = [_D_LOSSES[kind](r.float(), f.float()) for r, f in zip(real, fake, strict=True)]
    return torch.stack(parts).mean()


def g_loss(kind: str, fake: Logits) -> torch.Tensor:
    """Generator adversarial loss for `kind`."""
    return torch.stack([_G_LOSSES[kind](f.float()) for f in fake]).mean()


_D_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ns": lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
    "hinge": lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
    "lsgan": lambda r, f: (r - 1).pow(2).mean() + f.pow(2).mean(),
    "wgan-gp": lambda r, f: f.mean() - r.mean(),
}
_G_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ns": lambda f: F.softplus(-f).mean(),
    "hinge": lambda f: -f.mean(),
    "lsgan": lambda f: (f - 1).pow(2).mean(),
    "wgan-gp": lambda f: -f.mean(),
}


def d_accuracy(real: Logits, fake: Logits) -> tuple[float, float]:
    """Share of real logits > 0 and of fake logits < 0 (sign test; lsgan's boundary is 0.5)."""
    acc_real = torch.stack([(r > 0).float().mean() for r in real]).mean()
    acc_fake = torch.stack([(f < 0).float().mean() for f in fake]).mean()
    return float(acc_real), float(acc_fake)


def d_separation(real: Logits, fake: Logits) -> float:
    """How well D tells real segments from fake ones, the same for every adversarial loss.

    Per sub-discriminator, each segment's mean logit; then the share of (real, fake) segment
    pairs in which the real one scores higher (ties count ½: the AUC, via sorting), averaged
    over sub-discriminators. 0.5 = balanced, 1 = saturated. A logit's sign is a decision
    boundary only for ns/hinge (lsgan's targets are 0/1, a wgan-gp critic has none); ranking
    needs no boundary.

    Args:
        real, fake: per sub-discriminator, (B, ...) and (B', ...) logits.
    """
    parts = []
    for r, f in zip(real, fake, strict=True):
        r = r.detach().float().flatten(1).mean(1)  # (B,)
        f = f.detach().float().flatten(1).mean(1).sort().values  # (B',)
        below = torch.searchsorted(f, r, side="left").double()  # fakes under each real
        ties = torch.searchsorted(f, r, side="right").double() - below
        parts.append((below + 0.5 * ties).sum() / (len(r) * len(f)))
    return float(torch.stack(parts).mean())


def gradient_penalty(
    critic: Callable[[torch.Tensor], Logits],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """WGAN-GP: (||grad critic(x_hat)|| - 1)^2 on random interpolates of real and fake (B, T),
    their weights drawn from `generator`."""
    alpha = torch.rand(real.shape[0], 1, generator=generator).to(real.device, real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    score = sum(out.float().sum() for out in critic(mixed))
    (grad,) = torch.autograd.grad(score, mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def feature_matching(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between D's feature maps on real (detached) and fake inputs."""
    parts = [F.l1_loss(f.float(), r.detach().float()) for r, f in zip(real, fake, strict=True)]
    return torch.stack(parts).mean()


def stft_sizes(length: int, candidates: Sequence[int] = (64, 128, 256, 512)) -> list[int]:
    """FFT sizes that fit a signal of `length` samples (500 samples is shorter than 2048)."""
    sizes = [n for n in candidates if n <= length]
    return sizes or [max(8, 2 ** int(length).bit_length() // 2)]


def multi_resolution_stft(
    fake: torch.Tensor, real: torch.Tensor, sizes: Sequence[int]
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes; inputs (B, T)."""
    parts = []
    for n in sizes:
        fake_mag, real_mag = _magnitude(fake, n), _magnitude(real, n)
        convergence = (real_mag - fake_mag).norm() / real_mag.norm().clamp_min(1e-5)
        log_l1 = F.l1_loss(torch.log(fake_mag + 1e-5), torch.log(real_mag + 1e-5))
        parts.append(convergence + log_l1)
    return torch.stack(parts).mean()


def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(
        x.float(), n_fft, hop_length=n_fft // 4, window=window, center=True, return_complex=True
    )
    return spec.abs()


def reconstruction(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Sample-wise L1 between (B, T) waveforms."""
    return F.l1_loss(fake.float(), real.float())


def noise_spread(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, T) twice -> (B,) RMS of the difference relative to the pair's RMS: 0 for equal
    inputs, about sqrt(2) for independent ones at the same level."""
    power = 0.5 * (a.float().pow(2).mean(-1) + b.float().pow(2).mean(-1))
    return (a.float() - b.float()).pow(2).mean(-1).div(power + 1e-8).sqrt()


def mode_seeking(
    fake_a: torch.Tensor,
    fake_b: torch.Tensor,
    noise_a: torch.Tensor,
    noise_b: torch.Tensor,
    target: float,
) -> torch.Tensor:
    """Mode seeking (MSGAN), hinged as in DSGAN: two noises (B, N) on one context gave
    fake_a, fake_b (B, T); the loss falls as their spread relative to the noises' spread
    rises, up to `target` (bounded, unlike MSGAN's 1 / ratio)."""
    noise = (noise_a - noise_b).float().pow(2).mean(-1).div(2).sqrt()  # ≈ 1 for N(0, 1)
    ratio = noise_spread(fake_a, fake_b) / noise.clamp_min(1e-3)
    return F.relu(target - ratio).mean()


def weighted_total(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum(weight * parts[name]) over weights > 0 whose part was computed."""
    terms = [w * parts[name] for name, w in weights.items() if w > 0 and name in parts]
    return torch.stack(terms).sum() if terms else torch.zeros(())
