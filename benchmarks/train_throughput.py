"""Training throughput of the default config, and what the Trainer's bookkeeping costs.

    python benchmarks/train_throughput.py [--steps 20] [--warmup 3] [--device cpu|cuda|all]
                                          [--smoke]

Prints, per device: steps/s and segments/s of `Trainer.step()` in the adversarial phase; the
ratio of a minimal hand-written PyTorch loop's step time (same modules, same losses, same
batch) to `Trainer.step()`'s (target >= 0.95: the Trainer adds no real overhead); and the share
of step time spent sampling batches (target <= 2 %). `--smoke`: 2 steps after 1, CPU only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from samplegan_tune.audio.corpus import Corpus, synthetic_songs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.models import context_rms, level
from samplegan_tune.train import losses
from samplegan_tune.train.rollout import crossfade_join
from samplegan_tune.train.trainer import Trainer


def _flat_unroll(t: Trainer, windows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rollout of Trainer.step(), written flat: fakes, reals, latents, the sequences,
    the AE pair, gains and anchors."""
    cfg, c, s, f = t.cfg, t.cfg.context, t.cfg.segment, t.cfg.crossfade
    free = torch.rand(windows.shape[0], generator=t.rng).to(t.device) < cfg.scheduled_sampling
    context, pending, fakes, lats, emitted, gains = windows[:, :c], None, [], [], [], []
    anchor = context_rms(context)
    for k in range(cfg.rollout_steps):
        if k:
            own = torch.cat([context[:, s:], emitted[-1].detach()], 1)
            context = torch.where(free[:, None], own, windows[:, k * s : k * s + c])
        noise = torch.randn(windows.shape[0], cfg.noise_dim, generator=t.rng).to(t.device)
        with t._autocast():
            out = t.model(context, noise, anchor)
        if k == 0:
            ae = (out.recon, out.ae_in)
        e, pending = crossfade_join(pending, out.fake.float(), s)
        fakes.append(out.fake.float()), lats.append(out.latent), emitted.append(e)
        gains.append(out.gain_db)
    real = torch.stack(
        [windows[:, c + k * s : c + k * s + s + f] for k in range(cfg.rollout_steps)], 1
    ).flatten(0, 1)
    seq_real = windows[:, c : c + cfg.rollout_steps * s]
    return (
        torch.stack(fakes, 1).flatten(0, 1),
        real,
        torch.stack(lats, 1).flatten(0, 1),
        torch.cat(emitted, 1),
        seq_real,
        *ae,
        torch.stack(gains, 1).flatten(0, 1),
        anchor.repeat_interleave(cfg.rollout_steps, dim=0),
    )


def hand_written_step(t: Trainer, windows: torch.Tensor) -> None:
    """The same computation as Trainer.step() in its adversarial phase, written flat."""
    cfg, s = t.cfg, t.cfg.segment
    with torch.no_grad():
        fake, real, lat, seq_fake, seq_real, *_ = _flat_unroll(t, windows)
    with t._autocast():
        (rl, _), (fl, _) = t.d(real, lat, t.d_rng), t.d(fake, lat, t.d_rng)
        sr, sf = t.seq_d(seq_real, None, t.d_rng)[0], t.seq_d(seq_fake, None, t.d_rng)[0]
    d_total = losses.d_loss(cfg.adv_loss, rl, fl) + losses.d_loss(cfg.adv_loss, [sr], [sf])
    t.opt_d.zero_grad(set_to_none=True)
    d_total.backward()
    torch.nn.utils.clip_grad_norm_(t._d_params(), cfg.grad_clip)
    t.opt_d.step()
    losses.d_accuracy(rl, fl)

    fake, real, lat, seq_fake, seq_real, recon, ae_in, gain, anchors = _flat_unroll(t, windows)
    with t._autocast():
        seed = int(torch.randint(2**62, (), generator=t.d_rng))
        fl, ff = t.d(fake, lat.detach(), torch.Generator().manual_seed(seed))
        with torch.no_grad():
            _, rf = t.d(real, lat, torch.Generator().manual_seed(seed))
        sf = t.seq_d(seq_fake, None, t.d_rng)[0]
    g_total = (
        cfg.lambda_recon_l1 * losses.reconstruction(fake, real)
        + cfg.lambda_recon_stft * losses.multi_resolution_stft(fake, real, t.stft_sizes)
        + cfg.lambda_loudness * level.gain_loss(gain, anchors, real[:, :s], cfg.max_gain_db)
        + cfg.lambda_ae
        * (
            losses.reconstruction(recon, ae_in)
            + losses.multi_resolution_stft(recon, ae_in, t.ae_stft_sizes)
        )
        + cfg.lambda_adv * losses.g_loss(cfg.adv_loss, fl)
        + cfg.lambda_fm * losses.feature_matching(rf, ff)
        + cfg.lambda_seq_adv * losses.g_loss(cfg.adv_loss, [sf])
    )
    t.opt_g.zero_grad(set_to_none=True)
    g_total.backward()
    for group in t.model.parameter_groups().values():
        torch.nn.utils.clip_grad_norm_(group, cfg.grad_clip)
    t.opt_g.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, steps: int, warmup: int) -> dict[str, float]:
    """Time Trainer.step() and the hand-written step, alternating, `steps` times after `warmup`;
    returns the medians of steps/s, segments/s, the hand-written / Trainer time ratio and the
    sampling share."""
    cfg = TrainConfig(fused_step=False)  # the plain step: the same work as the loop below
    corpus = Corpus.from_items(synthetic_songs(seconds=120.0, seed=0), cfg.sample_rate)
    trainer = Trainer(cfg, corpus, device=device)
    trainer.step_count = cfg.d_warmup_steps  # measure the full adversarial step
    trainer_times, hand_times, shares = [], [], []
    for i in range(warmup + steps):
        # Alternate the two so that thermal or background drift hits both alike.
        _sync(device)
        started = time.perf_counter()
        metrics = trainer.step()
        _sync(device)
        trainer_time = time.perf_counter() - started
        windows = trainer.sample_windows()
        _sync(device)
        started = time.perf_counter()
        hand_written_step(trainer, windows)
        _sync(device)
        if i >= warmup:
            trainer_times.append(trainer_time)
            hand_times.append(time.perf_counter() - started)
            shares.append(metrics["time/sampling_share"])
    step_s = statistics.median(trainer_times)
    return {
        "steps_per_s": 1 / step_s,
        "segments_per_s": cfg.batch_size * cfg.rollout_steps / step_s,
        "hand_over_trainer": statistics.median(hand_times) / step_s,
        "sampling_share": statistics.median(shares),
    }


def main() -> None:
    """Measure and print the throughput on each device asked for (CUDA skipped when absent)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    parser.add_argument("--smoke", action="store_true", help="2 steps after 1, CPU only")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.device = 2, 1, "cpu"
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        r = measure(torch.device(name), args.steps, args.warmup)
        print(
            f"{name}: {r['steps_per_s']:.2f} steps/s, {r['segments_per_s']:.0f} segments/s"
            f" | hand-written loop / Trainer.step time ratio {r['hand_over_trainer']:.3f}"
            f" (target >= 0.95) | batch sampling {100 * r['sampling_share']:.2f} % of a step"
            f" (target <= 2 %)"
        )


if __name__ == "__main__":
    main()
