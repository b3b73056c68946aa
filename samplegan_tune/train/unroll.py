"""A training rollout: G continues real contexts step by step, fed its own output (free)
or the real audio (teacher-forced), with the crossfaded stream, the targets and the context
tails the discriminators need. The trainer's losses read what `Unroller.advance` returns."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import Model, augment_context, context_rms
from samplegan_tune.train.rollout import crossfade_join

Unroll = dict[str, torch.Tensor]
_ONCE = ("ae_in", "recon", "fake_alt", "noise", "noise_alt")  # what step 0 alone reports


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """bf16 autocast for `precision` "bf16", else nothing (fp32). Losses run outside it, in
    fp32 (the STFTs, the judge)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Unroller:
    """Runs `model` over windows of real audio; noise, masks and augmentation draw from `rng`."""

    def __init__(
        self, cfg: TrainConfig, model: Model, rng: torch.Generator, device: torch.device
    ) -> None:
        self.cfg, self.model, self.rng, self.device = cfg, model, rng, device

    def start(self, windows: torch.Tensor, free_prob: float) -> dict[str, Any]:
        """A rollout's state before step 0: context (B, C), free mask (B,), anchor (B, 1)."""
        free = (torch.rand(windows.shape[0], generator=self.rng) < free_prob).to(self.device)
        context = windows[:, : self.cfg.context]
        state = {"free": free, "context": context, "pending": None, "emitted": None}
        return {**state, "anchor": context_rms(context)}

    def advance(
        self,
        windows: torch.Tensor,
        state: dict[str, Any],
        first: int,
        last: int,
        keep_graph: bool = False,
        alt: bool = False,
    ) -> Unroll:
        """Steps first .. last - 1 of a rollout, continuing `state` (updated in place).

        With `keep_graph` gradients flow through G's fed-back output (TBPTT inside a chunk);
        with `alt` step 0 also runs with a second noise, for the mode-seeking loss.

        Returns K' = last - first steps: "fake" (B, K', S + F) outputs, "real" (B, K', S + F)
        targets, "stitched" (B, K' * S) crossfaded fake sequence, "real_seq" (B, K' * S),
        "latent" (B, K', L), "gain_db" (B, K', 1), "fake_tail" / "real_tail" (B, K', tail)
        the last context_tail samples of the context G saw / of the real audio, the
        rollout's "anchor" (B, 1); from step 0: "ae_in" / "recon" (B, C), and with `alt`
        "fake_alt" (B, S + F), "noise" / "noise_alt" (B, noise_dim).
        """
        c, s, tail = self.cfg.context, self.cfg.segment, self.cfg.context_tail
        keys = ("fake", "latent", "emitted", "gain_db", "fake_tail")
        out: dict[str, list] = {key: [] for key in keys}
        once: Unroll = {}
        for k in range(first, last):
            if k > 0:
                previous = state["emitted"] if keep_graph else state["emitted"].detach()
                own = torch.cat([state["context"][:, s:], previous], dim=1)
                real = windows[:, k * s : k * s + c]
                state["context"] = torch.where(state["free"][:, None], own, real)
            # The AE's reconstruction is read at step 0 only (its loss): later steps skip the
            # decoder with fused_step.
            recon = k == 0 or not self.cfg.fused_step
            result = self.generate(state["context"], state["anchor"], alt and k == 0, recon)
            if k == 0:
                once = {key: result[key] for key in _ONCE if key in result}
            fake = result["fake"].float()
            state["emitted"], state["pending"] = crossfade_join(state["pending"], fake, s)
            out["fake"].append(fake)
            out["emitted"].append(state["emitted"])
            out["fake_tail"].append(state["context"][:, c - tail :])
            for key in ("latent", "gain_db"):
                out[key].append(result[key])
        result = {key: torch.stack(out[key], 1) for key in keys if key != "emitted"}
        result.update(self.targets(windows, first, last), **once)
        result.update(stitched=torch.cat(out["emitted"], 1), anchor=state["anchor"])
        return result

    def targets(self, windows: torch.Tensor, first: int, last: int) -> Unroll:
        """The real audio of steps first .. last - 1: "real", "real_seq", "real_tail"."""
        cfg = self.cfg
        c, s, f, tail = cfg.context, cfg.segment, cfg.crossfade, cfg.context_tail
        starts = [c + k * s for k in range(first, last)]
        return {
            "real": torch.stack([windows[:, i : i + s + f] for i in starts], 1),
            "real_seq": windows[:, starts[0] : starts[-1] + s],
            "real_tail": torch.stack([windows[:, i - tail : i] for i in starts], 1),
        }

    def generate(
        self, context: torch.Tensor, anchor: torch.Tensor, alt: bool, recon: bool = True
    ) -> Unroll:
        """One model call on context (B, C) with fresh noise and context-noise augmentation
        (and the AE's reconstruction when `recon`); with `alt` a second call with a second
        noise on the same (augmented) context."""
        batch = context.shape[0]
        noise = self._noise(batch)
        level = self._context_noise_level(batch)
        seen = context if level is None else augment_context(context, level, self.rng)
        with autocast(self.device, self.cfg.precision):
            result = self.model(seen, noise, anchor, level, with_recon=recon)
            if alt:
                noise_alt = self._noise(batch)
                full = not self.cfg.fused_step  # the plain step decodes unread output too
                again = self.model(seen, noise_alt, anchor, level, with_recon=full)
                result["fake_alt"] = again["fake"].float()
                result["noise"], result["noise_alt"] = noise, noise_alt
        return result

    def _noise(self, batch: int) -> torch.Tensor:
        return torch.randn(batch, self.cfg.noise_dim, generator=self.rng).to(self.device)

    def _context_noise_level(self, batch: int) -> torch.Tensor | None:
        """(B, 1) relative context-noise level: U(0, ctx_noise_max) while training,
        ctx_noise_gen otherwise; None when it is 0 (no augmentation, no RNG draw)."""
        cfg = self.cfg
        if self.model.training and cfg.ctx_noise_max > 0:
            return (torch.rand(batch, 1, generator=self.rng) * cfg.ctx_noise_max).to(self.device)
        if not self.model.training and cfg.ctx_noise_gen > 0:
            return torch.full((batch, 1), cfg.ctx_noise_gen, device=self.device)
        return None
