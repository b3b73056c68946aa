"""The autoencoder-seeded GAN trainer, plain PyTorch (no Ray): step(), evaluate(), state."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn.utils import parametrize

from samplegan_tune.audio.corpus import Corpus, WindowSampler
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import build_discriminators, build_model
from samplegan_tune.models.level import level_db
from samplegan_tune.train import losses
from samplegan_tune.train.unroll import Unroll, Unroller, autocast

_D_SEED_OFFSET = 1_000_003  # the discriminators' generator: a stream apart from the batches'


class Trainer:
    """Trains a model of either family (`models.build_model`) against the segment (and
    sequence) discriminators.

    Args:
        cfg: every hyperparameter.
        train: the training corpus; `heldout` the evaluation corpus (defaults to `train`).
        device: "cpu" or "cuda"; `cfg.precision` "bf16" runs the forward passes under bf16
            autocast.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        train: Corpus,
        heldout: Corpus | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's RNG untouched
            torch.manual_seed(cfg.seed)
            self.model = build_model(cfg).to(self.device)
            seg_d, seq_d = build_discriminators(cfg)
        self.d = seg_d.to(self.device)
        self.seq_d = seq_d.to(self.device) if seq_d is not None else None
        groups = self.model.parameter_groups()
        self.opt_g = torch.optim.Adam(
            [{"params": groups["g"], "lr": cfg.lr_g}, {"params": groups["ae"], "lr": cfg.lr_ae}],
            betas=(cfg.beta1, cfg.beta2),
        )
        self.opt_d = torch.optim.Adam(self._d_params(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.sampler = WindowSampler(train, self.device)
        self.eval_sampler = WindowSampler(heldout if heldout is not None else train, self.device)
        self.rng = torch.Generator().manual_seed(cfg.seed)  # batches, noise, sampling masks
        # The discriminators' draws: phase shuffle's shifts and WGAN-GP's interpolation weights.
        self.d_rng = torch.Generator().manual_seed(cfg.seed + _D_SEED_OFFSET)
        self.unroller = Unroller(cfg, self.model, self.rng, self.device)
        self.step_count = 0
        self.stft_sizes = losses.stft_sizes(cfg.segment)
        self.ae_stft_sizes = losses.stft_sizes(cfg.context)

    def _d_params(self) -> list[torch.nn.Parameter]:
        nets = [self.d] + ([self.seq_d] if self.seq_d is not None else [])
        return [p for net in nets for p in net.parameters()]

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.cfg.precision)

    @property
    def adversarial(self) -> bool:
        """Whether the discriminators are in play yet (after AE pre-training and D warm-up)."""
        start = self.cfg.ae_pretrain_steps + self.cfg.d_warmup_steps
        weights = self.cfg.lambda_adv + self.cfg.lambda_seq_adv + self.cfg.lambda_fm
        return self.step_count >= start and weights > 0

    @property
    def generator_steps(self) -> int:
        """G's updates so far: 0 while stage 1 (ae_pretrain_steps) trains the autoencoder."""
        return max(0, self.step_count - self.cfg.ae_pretrain_steps)

    @property
    def adversarial_steps(self) -> int:
        """Steps since the discriminators came into play (after stage 1 and D's warm-up): what
        a search's grace periods count, so no trial is judged before it has trained."""
        start = self.cfg.ae_pretrain_steps + self.cfg.d_warmup_steps
        return max(0, self.step_count - start)

    def sample_windows(self, batch_size: int | None = None) -> torch.Tensor:
        """(B, window) real audio: the context followed by rollout_steps segments."""
        return self.sampler.sample(batch_size or self.cfg.batch_size, self.cfg.window, self.rng)

    def step(self) -> dict[str, float]:
        """One training step; returns namespaced float metrics."""
        started = time.perf_counter()
        windows = self.sample_windows()
        sampled = time.perf_counter()
        self._set_training(True)
        self.model.stage(self.step_count)
        if self.step_count < self.cfg.ae_pretrain_steps:
            metrics = self._ae_step(windows)
        else:
            metrics = {}
            if self.adversarial:
                for i in range(self.cfg.n_critic):
                    with self._d_weights_once():
                        metrics.update(self._d_step(windows if i == 0 else self.sample_windows()))
            metrics.update(self._g_step(windows))
        self.step_count += 1
        total = time.perf_counter() - started
        metrics["time/step_s"] = total
        metrics["time/sampling_share"] = (sampled - started) / max(total, 1e-9)
        return metrics

    def unroll(self, windows: torch.Tensor, free_prob: float) -> Unroll:
        """Generate rollout_steps consecutive segments after each window's context.

        Each example runs free (its context fills with its own output, detached) with
        probability `free_prob`, else teacher-forced on the real audio. Returns what
        `_advance` returns, for the whole rollout.
        """
        state = self.unroller.start(windows, free_prob)
        return self.unroller.advance(windows, state, 0, self.cfg.rollout_steps)

    def _judge(
        self,
        segments: torch.Tensor,
        latents: torch.Tensor,
        tails: torch.Tensor,
        shifts: torch.Generator | None = None,
    ) -> tuple[list, list]:
        """Segment D over (B, K, T) segments, each after its (B, K, tail) context tail, with
        their (B, K, L) context latents; phase shuffle draws from `shifts` (default d_rng)."""
        shifts = self.d_rng if shifts is None else shifts
        with self._autocast():
            return self.d(self._joint(segments, tails), latents.flatten(0, 1).detach(), shifts)

    def _judge_both(self, u: Unroll) -> tuple[list, list]:
        """Segment D's logits on the rollout's real and fake steps. With `fused_step` one
        batched call (one phase-shuffle draw and one spectral-norm power iteration for both
        halves, as the math intends), else one call each."""
        if not self.cfg.fused_step:
            real, _ = self._judge(u.real, u.latent, u.real_tail)
            fake, _ = self._judge(u.fake, u.latent, u.fake_tail)
            return real, fake
        both = torch.cat([u.real, u.fake])  # (2B, K, T)
        tails = torch.cat([u.real_tail, u.fake_tail])
        logits, _ = self._judge(both, torch.cat([u.latent, u.latent]), tails)
        n = u.real.shape[0] * u.real.shape[1]
        return [x[:n] for x in logits], [x[n:] for x in logits]

    def _judge_sequences(self, u: Unroll) -> tuple[list, list]:
        """Sequence D's logits on each piece of the real and the stitched fake rollout, in
        one batched call per piece with `fused_step`."""
        pairs = zip(self._seq_pieces(u.real_seq), self._seq_pieces(u.stitched), strict=True)
        real, fake = [], []
        with self._autocast():
            for r, f in pairs:
                if self.cfg.fused_step:
                    logits = self.seq_d(torch.cat([r, f]), None, self.d_rng)[0]
                    real.append(logits[: r.shape[0]]), fake.append(logits[r.shape[0] :])
                else:
                    real.append(self.seq_d(r, None, self.d_rng)[0])
                    fake.append(self.seq_d(f, None, self.d_rng)[0])
        return real, fake

    def _joint(self, segments: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """(B, K, T) segments after their (B, K, tail) context tails -> (B * K, tail + T)."""
        flat = segments.flatten(0, 1)
        if tails.shape[-1] == 0:
            return flat
        return torch.cat([tails.flatten(0, 1).to(flat.dtype), flat], dim=-1)

    def _seq_pieces(self, sequence: torch.Tensor) -> list[torch.Tensor]:
        """(B, K * S) -> the pieces of tbptt steps the sequence D judges (all K when 0)."""
        return list(sequence.split(self.cfg.tbptt_chunk * self.cfg.segment, dim=1))

    def _d_step(self, windows: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            u = self.unroll(windows, cfg.scheduled_sampling)
        real_logits, fake_logits = self._judge_both(u)
        parts = {"adv": losses.d_loss(cfg.adv_loss, real_logits, fake_logits)}
        if cfg.adv_loss == "wgan-gp":
            flat_latent = u.latent.flatten(0, 1)
            parts["gp"] = losses.gradient_penalty(
                lambda x: self.d(x, flat_latent, self.d_rng)[0],
                self._joint(u.real, u.real_tail),
                self._joint(u.fake, u.fake_tail),
                self.d_rng,
            )
        if self.seq_d is not None:
            seq_real, seq_fake = self._judge_sequences(u)
            parts["seq_adv"] = losses.d_loss(cfg.adv_loss, seq_real, seq_fake)
        weights = {"adv": 1.0, "gp": cfg.lambda_gp, "seq_adv": 1.0}
        total = losses.weighted_total(parts, weights)
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = self._clip(self._d_params())
        self.opt_d.step()
        acc_real, acc_fake = losses.d_accuracy(real_logits, fake_logits)
        metrics = {f"loss/d_{name}": float(value.detach()) for name, value in parts.items()}
        metrics.update({"loss/d": float(total.detach()), "grad/d_norm": grad_norm})
        metrics.update({"d/acc_real": acc_real, "d/acc_fake": acc_fake})
        metrics["d/separation"] = losses.d_separation(real_logits, fake_logits)
        return metrics

    def _g_step(self, windows: torch.Tensor) -> dict[str, float]:
        """One G update over a rollout, in chunks of tbptt steps (one chunk when 0): each
        chunk's losses are back-propagated at once, then the rollout's state is detached."""
        with self._d_frozen():
            return self._g_update(windows)

    @contextlib.contextmanager
    def _d_frozen(self) -> Iterator[None]:
        """With `fused_step`, D's weights need no gradient while G trains (D's own step
        zeroes them first): backward then skips D's weight gradients."""
        params = self._d_params() if self.cfg.fused_step else []
        for p in params:
            p.requires_grad_(False)
        try:
            with self._d_weights_once():
                yield
        finally:
            for p in params:
                p.requires_grad_(True)

    def _d_weights_once(self) -> contextlib.AbstractContextManager:
        """With `fused_step`, D's normalised weights (spectral: one power iteration) are
        computed once per D or G update, not once per D call; D's weights change only at
        D's optimiser step, after which the cache is gone."""
        return parametrize.cached() if self.cfg.fused_step else contextlib.nullcontext()

    def _g_update(self, windows: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        steps = cfg.rollout_steps
        chunk = cfg.tbptt_chunk
        state = self.unroller.start(windows, cfg.scheduled_sampling)
        self.opt_g.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for first in range(0, steps, chunk):
            last = min(steps, first + chunk)
            alt = first == 0 and cfg.lambda_ms > 0 and cfg.noise_dim > 0
            u = self.unroller.advance(windows, state, first, last, cfg.tbptt > 0, alt)
            total, parts = self._g_losses(u, (last - first) / steps)
            if total.requires_grad:
                total.backward()
            for name, value in {**parts, "g_total": total}.items():
                sums[f"loss/{name}"] = sums.get(f"loss/{name}", 0.0) + float(value.detach())
            if alt:
                spread = losses.noise_spread(u.fake[:, 0], u.fake_alt).mean()
                sums["g/noise_spread"] = float(spread.detach())
            state.detach()
        groups = self.model.parameter_groups()
        g_norm, ae_norm = self._clip(groups["g"]), self._clip(groups["ae"])
        self.opt_g.step()
        return {**sums, "grad/g_norm": g_norm, "grad/ae_norm": ae_norm}

    def _g_losses(self, u: Unroll, share: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's weighted loss over one chunk and its parts; per-step parts scaled by `share`
        (the chunk's part of the rollout), once-per-rollout parts ("ae", "ms") not."""
        cfg = self.cfg
        parts = self._reconstruction_parts(u)
        if self.adversarial:
            parts.update(self._adversarial_parts(u))
        if u.fake_alt is not None:
            pair = (u.fake[:, 0], u.fake_alt, u.noise, u.noise_alt)
            parts["ms"] = losses.mode_seeking(*pair, cfg.ms_target)
        names = ("recon_l1", "recon_stft", "loudness", "ae", "adv", "seq_adv", "fm", "ms")
        weights = {name: getattr(cfg, f"lambda_{name}") for name in names}
        scaled = {k: v if k in ("ae", "ms") else v * share for k, v in parts.items()}
        total = losses.weighted_total(scaled, weights)
        return total, {name: value.detach() for name, value in scaled.items()}

    def _reconstruction_parts(self, u: Unroll) -> dict[str, torch.Tensor]:
        fake, real = u.fake.flatten(0, 1), u.real.flatten(0, 1)
        s = self.cfg.segment
        parts = {
            "recon_l1": losses.reconstruction(fake, real),
            "recon_stft": losses.multi_resolution_stft(fake, real, self.stft_sizes),
            "loudness": self._loudness_loss(u, real[:, :s]),
        }
        if u.ae_in is not None:  # step 0 only
            parts["ae"] = self._ae_loss(u.recon, u.ae_in)
        return parts

    def _loudness_loss(self, u: Unroll, real: torch.Tensor) -> torch.Tensor:
        """The level rule's loss over the (B, K, ...) steps of `u`; real (B * K, S)."""
        anchor = u.anchor.repeat_interleave(u.fake.shape[1], dim=0)  # flatten(0, 1) order
        return self.model.level.loss(u.fake.flatten(0, 1), u.gain_db.flatten(0, 1), anchor, real)

    def _ae_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return losses.reconstruction(recon, target) + losses.multi_resolution_stft(
            recon, target, self.ae_stft_sizes
        )

    def _adversarial_parts(self, u: Unroll) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        # Feature matching compares maps shifted alike: two generators from one drawn seed.
        seed = int(torch.randint(2**62, (), generator=self.d_rng))
        shifts = torch.Generator().manual_seed(seed)
        fake_logits, fake_feats = self._judge(u.fake, u.latent, u.fake_tail, shifts)
        with torch.no_grad():
            shifts = torch.Generator().manual_seed(seed)
            _, real_feats = self._judge(u.real, u.latent, u.real_tail, shifts)
        parts = {
            "adv": losses.g_loss(cfg.adv_loss, fake_logits),
            "fm": losses.feature_matching(real_feats, fake_feats),
        }
        if self.seq_d is not None:
            with self._autocast():
                seq_fake, _ = self.seq_d(u.stitched, None, self.d_rng)
            parts["seq_adv"] = losses.g_loss(cfg.adv_loss, [seq_fake])
        return parts

    def _ae_step(self, windows: torch.Tensor) -> dict[str, float]:
        context = windows[:, : self.cfg.context]
        noise = torch.zeros(context.shape[0], self.cfg.noise_dim, device=self.device)
        with self._autocast():
            result = self.model(context, noise)
        loss = self._ae_loss(result.recon, result.ae_in)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        ae_norm = self._clip(self.model.parameter_groups()["ae"])
        self.opt_g.step()
        return {"loss/ae": float(loss.detach()), "grad/ae_norm": ae_norm}

    def _clip(self, params: list[torch.nn.Parameter]) -> float:
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def _set_training(self, mode: bool) -> None:
        for net in (self.model, self.d, self.seq_d):
            if net is not None:
                net.train(mode)

    @torch.no_grad()
    def evaluate(self, count: int = 32, seed: int = 1234) -> dict[str, float]:
        """Free-running rollouts on fixed held-out windows: reconstruction, loudness, D accuracy.

        Returns "eval/*" metrics; loudness_gap_db is the mean |dB| gap per generated segment.
        """
        self._set_training(False)
        windows = self.eval_sampler.fixed_windows(count, self.cfg.window, seed)
        saved = self.rng.get_state()
        self.rng.manual_seed(seed)
        u = self.unroll(windows, free_prob=1.0)
        self.rng.set_state(saved)
        parts = self._reconstruction_parts(u)
        s = self.cfg.segment
        fake, real = u.fake[..., :s], u.real[..., :s]
        gap_db = (level_db(fake) - level_db(real)).abs().mean()
        real_logits, fake_logits = self._judge_both(u)
        acc_real, acc_fake = losses.d_accuracy(real_logits, fake_logits)
        self._set_training(True)
        metrics = {f"eval/{name}": float(parts[name]) for name in ("recon_l1", "recon_stft", "ae")}
        metrics.update({"eval/loudness_gap_db": float(gap_db)})
        metrics.update({"eval/d_acc_real": acc_real, "eval/d_acc_fake": acc_fake})
        metrics["eval/d_separation"] = losses.d_separation(real_logits, fake_logits)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimisers, RNG states, step."""
        state = {
            "step": self.step_count,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "d": self.d.state_dict(),
            "seq_d": self.seq_d.state_dict() if self.seq_d is not None else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_batches": self.rng.get_state(),
            "rng_d": self.d_rng.get_state(),
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`: weights, optimisers, RNG states and step."""
        self.step_count = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.d.load_state_dict(state["d"])
        if self.seq_d is not None:
            self.seq_d.load_state_dict(state["seq_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng_batches"])
        if "rng_d" in state:  # a checkpoint from before d_rng drew from torch's global RNG
            self.d_rng.set_state(state["rng_d"])
