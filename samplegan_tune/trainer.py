"""The autoencoder-seeded GAN trainer, plain PyTorch (no Ray): step(), evaluate(), state."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from samplegan_tune import losses
from samplegan_tune.config import TrainConfig
from samplegan_tune.data import Corpus, WindowSampler
from samplegan_tune.models import ContinuationModel, build_discriminators, context_rms
from samplegan_tune.rollout import crossfade_join

Unroll = dict[str, torch.Tensor]


class Trainer:
    """Trains a ContinuationModel against segment (and sequence) discriminators.

    Args:
        cfg: every hyperparameter.
        train: the training corpus; `heldout` the evaluation corpus (defaults to `train`).
        device: "cpu" or "cuda"; on CUDA the forward passes run under bf16 autocast.
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
        torch.manual_seed(cfg.seed)  # weight init, phase shuffle and GP draw from it
        self.model = ContinuationModel(cfg).to(self.device)
        seg_d, seq_d = build_discriminators(cfg)
        self.d = seg_d.to(self.device)
        self.seq_d = seq_d.to(self.device) if seq_d is not None else None
        self.opt_g = torch.optim.Adam(
            [
                {"params": self.model.g.parameters(), "lr": cfg.lr_g},
                {"params": self.model.ae.parameters(), "lr": cfg.lr_ae},
            ],
            betas=(cfg.beta1, cfg.beta2),
        )
        self.opt_d = torch.optim.Adam(self._d_params(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        self.sampler = WindowSampler(train, self.device)
        self.eval_sampler = WindowSampler(heldout if heldout is not None else train, self.device)
        self.rng = torch.Generator().manual_seed(cfg.seed)  # batches, noise, sampling masks
        self.step_count = 0
        self.stft_sizes = losses.stft_sizes(cfg.segment)
        self.ae_stft_sizes = losses.stft_sizes(cfg.context)

    def _d_params(self) -> list[torch.nn.Parameter]:
        nets = [self.d] + ([self.seq_d] if self.seq_d is not None else [])
        return [p for net in nets for p in net.parameters()]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def adversarial(self) -> bool:
        """Whether the discriminators are in play yet (after AE pre-training and D warm-up)."""
        start = self.cfg.ae_pretrain_steps + self.cfg.d_warmup_steps
        weights = self.cfg.lambda_adv + self.cfg.lambda_seq_adv + self.cfg.lambda_fm
        return self.step_count >= start and weights > 0

    def sample_windows(self, batch_size: int | None = None) -> torch.Tensor:
        """(B, window) real audio: the context followed by rollout_steps segments."""
        return self.sampler.sample(batch_size or self.cfg.batch_size, self.cfg.window, self.rng)

    def step(self) -> dict[str, float]:
        """One training step; returns namespaced float metrics."""
        started = time.perf_counter()
        windows = self.sample_windows()
        sampled = time.perf_counter()
        self._set_training(True)
        if self.step_count < self.cfg.ae_pretrain_steps:
            metrics = self._ae_step(windows)
        else:
            metrics = {}
            if self.adversarial:
                for i in range(self.cfg.n_critic):
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
        probability `free_prob`, else teacher-forced on the real audio.

        Returns a dict of "fake" (B, K, S + F) per-step outputs, "real" (B, K, S + F) targets,
        "stitched" (B, K * S) crossfaded fake sequence, "real_seq" (B, K * S), "latent"
        (B, K, L), "gain_db" (B, K, 1), the rollout's "anchor" level (B, 1), and step 0's
        "ae_in" / "recon" (B, C).
        """
        cfg = self.cfg
        c, s, f = cfg.context, cfg.segment, cfg.crossfade
        batch = windows.shape[0]
        free = (torch.rand(batch, generator=self.rng) < free_prob).to(self.device)
        context, pending = windows[:, :c], None
        anchor = context_rms(context)
        out: dict[str, list] = {key: [] for key in ("fake", "latent", "emitted", "gain_db")}
        for k in range(cfg.rollout_steps):
            if k > 0:
                own = torch.cat([context[:, s:], out["emitted"][-1].detach()], dim=1)
                context = torch.where(free[:, None], own, windows[:, k * s : k * s + c])
            noise = torch.randn(batch, cfg.noise_dim, generator=self.rng).to(self.device)
            with self._autocast():
                result = self.model(context, noise, anchor)
            if k == 0:
                out["ae_in"], out["recon"] = result["ae_in"], result["recon"]
            emitted, pending = crossfade_join(pending, result["fake"].float(), s)
            out["fake"].append(result["fake"].float())
            out["emitted"].append(emitted)
            for key in ("latent", "gain_db"):
                out[key].append(result[key])
        targets = [windows[:, c + k * s : c + k * s + s + f] for k in range(cfg.rollout_steps)]
        return {
            "fake": torch.stack(out["fake"], 1),
            "real": torch.stack(targets, 1),
            "stitched": torch.cat(out["emitted"], 1),
            "real_seq": windows[:, c : c + cfg.rollout_steps * s],
            "latent": torch.stack(out["latent"], 1),
            "gain_db": torch.stack(out["gain_db"], 1),
            "anchor": anchor,
            "ae_in": out["ae_in"],
            "recon": out["recon"],
        }

    def _judge(self, segments: torch.Tensor, latents: torch.Tensor) -> tuple[list, list]:
        """Segment D over (B, K, T) segments with their (B, K, L) context latents."""
        with self._autocast():
            return self.d(segments.flatten(0, 1), latents.flatten(0, 1).detach())

    def _d_step(self, windows: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            u = self.unroll(windows, cfg.scheduled_sampling)
        real_logits, _ = self._judge(u["real"], u["latent"])
        fake_logits, _ = self._judge(u["fake"], u["latent"])
        parts = {"adv": losses.d_loss(cfg.adv_loss, real_logits, fake_logits)}
        if cfg.adv_loss == "wgan-gp":
            flat_latent = u["latent"].flatten(0, 1)
            parts["gp"] = losses.gradient_penalty(
                lambda x: self.d(x, flat_latent)[0],
                u["real"].flatten(0, 1),
                u["fake"].flatten(0, 1),
            )
        if self.seq_d is not None:
            with self._autocast():
                seq_real, _ = self.seq_d(u["real_seq"])
                seq_fake, _ = self.seq_d(u["stitched"])
            parts["seq_adv"] = losses.d_loss(cfg.adv_loss, [seq_real], [seq_fake])
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
        return metrics

    def _g_step(self, windows: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        u = self.unroll(windows, cfg.scheduled_sampling)
        parts = self._reconstruction_parts(u)
        if self.adversarial:
            parts.update(self._adversarial_parts(u))
        weights = {
            "recon_l1": cfg.lambda_recon_l1,
            "recon_stft": cfg.lambda_recon_stft,
            "loudness": cfg.lambda_loudness,
            "ae": cfg.lambda_ae,
            "adv": cfg.lambda_adv,
            "seq_adv": cfg.lambda_seq_adv,
            "fm": cfg.lambda_fm,
        }
        total = losses.weighted_total(parts, weights)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        g_norm = self._clip(list(self.model.g.parameters()))
        ae_norm = self._clip(list(self.model.ae.parameters()))
        self.opt_g.step()
        metrics = {f"loss/{name}": float(value.detach()) for name, value in parts.items()}
        metrics.update({"loss/g_total": float(total.detach()), "grad/g_norm": g_norm})
        metrics["grad/ae_norm"] = ae_norm
        return metrics

    def _reconstruction_parts(self, u: Unroll) -> dict[str, torch.Tensor]:
        fake, real = u["fake"].flatten(0, 1), u["real"].flatten(0, 1)
        s = self.cfg.segment
        return {
            "recon_l1": losses.reconstruction(fake, real),
            "recon_stft": losses.multi_resolution_stft(fake, real, self.stft_sizes),
            "loudness": self._loudness_loss(u, real[:, :s]),
            "ae": self._ae_loss(u["recon"], u["ae_in"]),
        }

    def _loudness_loss(self, u: Unroll, real: torch.Tensor) -> torch.Tensor:
        """Level matching: of the gain head (gain_mode=context) or of the waveform (free)."""
        if self.cfg.gain_mode == "context":
            k = self.cfg.rollout_steps
            anchor = u["anchor"].repeat_interleave(k, dim=0)  # matches flatten(0, 1) order
            gain_db = u["gain_db"].flatten(0, 1)
            return losses.gain_loss(gain_db, anchor, real, self.cfg.max_gain_db)
        return losses.loudness_gap(u["fake"].flatten(0, 1)[:, : self.cfg.segment], real)

    def _ae_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return losses.reconstruction(recon, target) + losses.multi_resolution_stft(
            recon, target, self.ae_stft_sizes
        )

    def _adversarial_parts(self, u: Unroll) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        fake_logits, fake_feats = self._judge(u["fake"], u["latent"])
        with torch.no_grad():
            _, real_feats = self._judge(u["real"], u["latent"])
        parts = {
            "adv": losses.g_loss(cfg.adv_loss, fake_logits),
            "fm": losses.feature_matching(real_feats, fake_feats),
        }
        if self.seq_d is not None:
            with self._autocast():
                seq_fake, _ = self.seq_d(u["stitched"])
            parts["seq_adv"] = losses.g_loss(cfg.adv_loss, [seq_fake])
        return parts

    def _ae_step(self, windows: torch.Tensor) -> dict[str, float]:
        context = windows[:, : self.cfg.context]
        noise = torch.zeros(context.shape[0], self.cfg.noise_dim, device=self.device)
        with self._autocast():
            result = self.model(context, noise)
        loss = self._ae_loss(result["recon"], result["ae_in"])
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        ae_norm = self._clip(list(self.model.ae.parameters()))
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
        fake, real = u["fake"][..., :s], u["real"][..., :s]
        gap_db = (losses.level_db(fake) - losses.level_db(real)).abs().mean()
        real_logits, _ = self._judge(u["real"], u["latent"])
        fake_logits, _ = self._judge(u["fake"], u["latent"])
        acc_real, acc_fake = losses.d_accuracy(real_logits, fake_logits)
        self._set_training(True)
        metrics = {f"eval/{name}": float(parts[name]) for name in ("recon_l1", "recon_stft", "ae")}
        metrics.update({"eval/loudness_gap_db": float(gap_db)})
        metrics.update({"eval/d_acc_real": acc_real, "eval/d_acc_fake": acc_fake})
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
            "rng_torch": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.d.load_state_dict(state["d"])
        if self.seq_d is not None:
            self.seq_d.load_state_dict(state["seq_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng_batches"])
        torch.set_rng_state(state["rng_torch"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
