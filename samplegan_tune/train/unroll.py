"""A training rollout: G continues real contexts step by step, fed its own output (free)
or the real audio (teacher-forced), with the crossfaded stream, the targets and the context
tails the discriminators need. The trainer's losses read the `Unroll` that
`Unroller.advance` returns."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import ModelFamily, Step, context_rms
from samplegan_tune.train.rollout import crossfade_join, generation_step


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision` "bf16", else nothing (fp32). Losses run outside it, in
    fp32 (the STFTs, the judge)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class RolloutState:
    """Where a rollout of B windows stands between chunks of steps.

    Attributes:
        free: (B,) which examples run on their own output (the others are teacher-forced).
        context: (B, C) what the next step continues.
        anchor: (B, 1) the level of the real context the rollout started from.
        pending: (B, F) the last step's tail the next step fades into (None before step 0).
        emitted: (B, S) the last step's final samples (None before step 0).
    """

    free: torch.Tensor
    context: torch.Tensor
    anchor: torch.Tensor
    pending: torch.Tensor | None = None
    emitted: torch.Tensor | None = None

    def detach(self) -> None:
        """Cut the graph here (between TBPTT chunks)."""
        self.context = self.context.detach()
        if self.pending is not None:
            self.pending, self.emitted = self.pending.detach(), self.emitted.detach()


@dataclass
class Unroll:
    """K' steps of a rollout of B windows (steps first .. last - 1 of `Unroller.advance`).

    Attributes:
        fake: (B, K', S + F) G's outputs; real: (B, K', S + F) the true audio there.
        stitched: (B, K' * S) the crossfaded fake stream; real_seq: (B, K' * S) the truth.
        latent: (B, K', L) the seed vectors D is conditioned on; gain_db: (B, K', 1).
        fake_tail / real_tail: (B, K', tail) the last context_tail samples of the context G
            saw / of the real audio before each step.
        anchor: (B, 1) the rollout's anchor level.
        ae_in / recon: (B, C) the autoencoder's input and output at step 0 (None otherwise).
        fake_alt: (B, S + F) step 0 again with a second noise, and `noise` / `noise_alt`
            (B, noise_dim) the two noises, for the mode-seeking loss (None without `alt`).
    """

    fake: torch.Tensor
    real: torch.Tensor
    stitched: torch.Tensor
    real_seq: torch.Tensor
    latent: torch.Tensor
    gain_db: torch.Tensor
    fake_tail: torch.Tensor
    real_tail: torch.Tensor
    anchor: torch.Tensor
    ae_in: torch.Tensor | None = None
    recon: torch.Tensor | None = None
    fake_alt: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    noise_alt: torch.Tensor | None = None


@dataclass
class _First:
    """What step 0 alone reports (see `Unroll`)."""

    ae_in: torch.Tensor | None = None
    recon: torch.Tensor | None = None
    fake_alt: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    noise_alt: torch.Tensor | None = None


class Unroller:
    """Runs `model` over windows of real audio; noise, masks and augmentation draw from `rng`."""

    def __init__(
        self, cfg: TrainConfig, model: ModelFamily, rng: torch.Generator, device: torch.device
    ) -> None:
        self.cfg, self.model, self.rng, self.device = cfg, model, rng, device

    def start(self, windows: torch.Tensor, free_prob: float) -> RolloutState:
        """A rollout's state before step 0: each example free with probability `free_prob`."""
        free = (torch.rand(windows.shape[0], generator=self.rng) < free_prob).to(self.device)
        context = windows[:, : self.cfg.context]
        return RolloutState(free, context, context_rms(context))

    def advance(
        self,
        windows: torch.Tensor,
        state: RolloutState,
        first: int,
        last: int,
        keep_graph: bool = False,
        alt: bool = False,
    ) -> Unroll:
        """Steps first .. last - 1 of a rollout, continuing `state` (updated in place).

        With `keep_graph` gradients flow through G's fed-back output (TBPTT inside a chunk);
        with `alt` step 0 also runs with a second noise, for the mode-seeking loss.
        """
        c, s, tail = self.cfg.context, self.cfg.segment, self.cfg.context_tail
        fakes, latents, gains, tails, emitted = [], [], [], [], []
        once = _First()
        for k in range(first, last):
            if k > 0:
                previous = state.emitted if keep_graph else state.emitted.detach()
                own = torch.cat([state.context[:, s:], previous], dim=1)
                real = windows[:, k * s : k * s + c]
                state.context = torch.where(state.free[:, None], own, real)
            # The AE's reconstruction is read at step 0 only (its loss): later steps skip the
            # decoder with fused_step.
            recon = k == 0 or not self.cfg.fused_step
            step, once_k = self.generate(state.context, state.anchor, alt and k == 0, recon)
            if k == 0:
                once = once_k
            fake = step.fake.float()
            state.emitted, state.pending = crossfade_join(state.pending, fake, s)
            fakes.append(fake), emitted.append(state.emitted)
            latents.append(step.latent), gains.append(step.gain_db)
            tails.append(state.context[:, c - tail :])
        real, real_seq, real_tail = self.targets(windows, first, last)
        return Unroll(
            fake=torch.stack(fakes, 1),
            real=real,
            stitched=torch.cat(emitted, 1),
            real_seq=real_seq,
            latent=torch.stack(latents, 1),
            gain_db=torch.stack(gains, 1),
            fake_tail=torch.stack(tails, 1),
            real_tail=real_tail,
            anchor=state.anchor,
            **vars(once),
        )

    def targets(
        self, windows: torch.Tensor, first: int, last: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The real audio of steps first .. last - 1: `Unroll`'s real, real_seq, real_tail."""
        cfg = self.cfg
        c, s, f, tail = cfg.context, cfg.segment, cfg.crossfade, cfg.context_tail
        starts = [c + k * s for k in range(first, last)]
        return (
            torch.stack([windows[:, i : i + s + f] for i in starts], 1),
            windows[:, starts[0] : starts[-1] + s],
            torch.stack([windows[:, i - tail : i] for i in starts], 1),
        )

    def generate(
        self, context: torch.Tensor, anchor: torch.Tensor, alt: bool, recon: bool = True
    ) -> tuple[Step, _First]:
        """One generation step on context (B, C) with fresh noise and context-noise
        augmentation (and the AE's reconstruction when `recon`); with `alt` a second call with
        a second noise on the same (augmented) context. Returns the step and what step 0
        reports (see `Unroll`)."""
        batch = context.shape[0]
        level = self._context_noise_level(batch)
        with autocast(self.device, self.cfg.precision):
            step, noise, seen = generation_step(self.model, context, anchor, level, self.rng, recon)
            once = _First(ae_in=step.ae_in, recon=step.recon)
            if alt:
                noise_alt = torch.randn(batch, self.cfg.noise_dim, generator=self.rng)
                noise_alt = noise_alt.to(self.device)
                full = not self.cfg.fused_step  # the plain step decodes unread output too
                again = self.model(seen, noise_alt, anchor, level, with_recon=full)
                once.fake_alt, once.noise, once.noise_alt = again.fake.float(), noise, noise_alt
        return step, once

    def _context_noise_level(self, batch: int) -> torch.Tensor | None:
        """(B, 1) relative context-noise level: U(0, ctx_noise_max) while training,
        ctx_noise_gen otherwise; None when it is 0 (no augmentation, no RNG draw)."""
        cfg = self.cfg
        if self.model.training and cfg.ctx_noise_max > 0:
            return (torch.rand(batch, 1, generator=self.rng) * cfg.ctx_noise_max).to(self.device)
        if not self.model.training and cfg.ctx_noise_gen > 0:
            return torch.full((batch, 1), cfg.ctx_noise_gen, device=self.device)
        return None
