"""Generation: one step (shared by training, evaluation and `generate`), the crossfaded join,
and long-form generation: context -> segment -> slide the context -> repeat."""

from __future__ import annotations

import math

import torch

from samplegan_tune.models import ModelFamily, Step, augment_context, context_rms


def crossfade_join(
    pending: torch.Tensor | None, new: torch.Tensor, segment: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Join one generated step onto the stream.

    Args:
        pending: (B, F) the previous step's tail that overlaps this step's head, or None.
        new: (B, S + F) this step's output.
        segment: S, the hop between steps.

    Returns:
        (B, S) samples now final, and (B, F) this step's tail, pending the next step.
    """
    fade = new.shape[-1] - segment
    emitted = new[:, :segment]
    if pending is not None and fade > 0:
        # Both overlapping parts estimate the same samples: a raised-cosine fade between them.
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, fade + 2, device=new.device))
        ramp = ramp[1:-1].to(new.dtype)
        head = pending * (1 - ramp) + new[:, :fade] * ramp
        emitted = torch.cat([head, new[:, fade:segment]], dim=1)
    return emitted, new[:, segment:]


def generation_step(
    model: ModelFamily,
    context: torch.Tensor,
    anchor: torch.Tensor,
    level: torch.Tensor | None,
    rng: torch.Generator,
    with_recon: bool = False,
) -> tuple[Step, torch.Tensor, torch.Tensor]:
    """One step of generation, as training, evaluation and `generate` all run it.

    Args:
        model: the autoencoder + generator.
        context: (B, C) the audio before the step.
        anchor: (B, 1) the level the rollout started at.
        level: (B, 1) the relative context noise to add (`augment_context`), or None: none.
        rng: draws the generator's noise (B, noise_dim), then the context noise.
        with_recon: also run the autoencoder's decoder (`Step.recon`).

    Returns:
        The step, the noise drawn, and the context as the model saw it.
    """
    noise = torch.randn(context.shape[0], model.cfg.noise_dim, generator=rng).to(context.device)
    seen = context if level is None else augment_context(context, level, rng)
    return model(seen, noise, anchor, level, with_recon=with_recon), noise, seen


@torch.no_grad()
def rollout(model: ModelFamily, context: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
    """Continue each context for `num_samples` samples.

    Args:
        model: the autoencoder + generator.
        context: (B, C') the audio before the continuation; left-padded with zeros or cropped
            to the model's context length C.
        num_samples: length of the continuation.
        seed: seeds the generator's noise, so the same call gives the same audio.

    Returns:
        (B, num_samples) the continuation alone.
    """
    cfg = model.cfg
    device = next(model.parameters()).device
    context = context.to(device)
    anchor = context_rms(context)  # before padding, which would lower a short primer's level
    context = fit_context(context, cfg.context)
    noise_rng = torch.Generator().manual_seed(seed)
    steps = math.ceil(num_samples / cfg.segment)
    # The context-noise level the model was trained to read; 0 adds nothing, draws nothing.
    level = torch.full_like(anchor, cfg.ctx_noise_gen) if cfg.ctx_noise_gen > 0 else None
    pieces, pending = [], None
    for _ in range(steps):
        step, _, _ = generation_step(model, context, anchor, level, noise_rng)
        emitted, pending = crossfade_join(pending, step.fake.float(), cfg.segment)
        pieces.append(emitted)
        context = torch.cat([context[:, cfg.segment :], emitted], dim=1)
    return torch.cat(pieces, dim=1)[:, :num_samples]


def fit_context(context: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T) -> (B, length): keep the last `length` samples, zero-padding on the left."""
    if context.shape[-1] >= length:
        return context[:, -length:]
    return torch.nn.functional.pad(context, (length - context.shape[-1], 0))


def unprimed_context(batch: int, length: int, level_dbfs: float, seed: int) -> torch.Tensor:
    """(B, length) quiet white noise at `level_dbfs` RMS: a start when no primer is given."""
    rng = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, generator=rng) * 10 ** (level_dbfs / 20)
