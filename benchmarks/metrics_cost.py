"""What evaluating a trial's rollouts costs next to the training between two evaluations.

    python benchmarks/metrics_cost.py [--rollouts 16] [--seconds 4] [--interval 250]
                                      [--steps 10] [--threads 1] [--smoke]

With the default config (untrained, which costs the same as trained) at 16 kHz, times:
  * generating `--rollouts` primed rollouts of `--seconds` (the evaluation's audio);
  * the metrics and rollout collapse detectors on them (`evaluate_clips` with the primers +
    `check_rollouts`), and the music embedding's share of that (`musicmetrics`);
  * building the real-side reference (once per dataset, then cached: not per evaluation);
  * `--steps` adversarial `Trainer.step()`s, scaled to `--interval` steps (the training
    between two evaluations).
Prints the evaluation / training-interval ratio, target ≤ 10 %, for the metrics alone and for
rollouts + metrics.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from samplegan_tune.audio.corpus import Corpus, split_corpus
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.judge.collapse import CollapseMonitor
from samplegan_tune.judge.metrics import RealReference, evaluate_clips
from samplegan_tune.judge.musicmetrics import music_metrics, shared_embedding
from samplegan_tune.train.rollout import rollout
from samplegan_tune.train.trainer import Trainer
from samplegan_tune.tuning.trial import JUDGE_PRIMER_SECONDS


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of `fn()` in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Time the rollouts, the metrics, the reference and the training steps; print each evaluation
    cost as a share of a training interval."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--interval", type=int, default=250, help="steps between evaluations")
    parser.add_argument("--steps", type=int, default=10, help="training steps actually timed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--smoke", action="store_true", help="2 rollouts, 2 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rollouts, args.steps = 2, 2
    torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    corpus = Corpus.from_items(synthetic_songs(120.0, cfg.sample_rate, seed=0), cfg.sample_rate)
    train, heldout = split_corpus(corpus, 0.25, min_samples=cfg.window)
    trainer = Trainer(cfg, train, heldout)
    size = round(args.seconds * cfg.sample_rate)
    judged = round(JUDGE_PRIMER_SECONDS * cfg.sample_rate)
    pairs = trainer.eval_sampler.fixed_windows(max(args.rollouts, 16), judged + size, seed=1)
    before, real = pairs[:, :judged], pairs[:, judged:]
    t_reference = timed(lambda: RealReference.from_clips(real, cfg.sample_rate, primers=before))
    reference = RealReference.from_clips(real, cfg.sample_rate, primers=before)
    primers = trainer.eval_sampler.fixed_windows(args.rollouts, max(judged, cfg.context), seed=7)
    trainer.model.eval()
    clips = rollout(trainer.model, primers, size, seed=0)
    t_rollout = timed(lambda: rollout(trainer.model, primers, size, seed=0))
    trainer.model.train()

    def score() -> None:
        evaluate_clips(clips, reference, primers=primers)
        CollapseMonitor().check_rollouts(clips, reference)

    t_metrics = timed(score, repeats=3)
    net = shared_embedding()
    t_music = timed(lambda: music_metrics(net, clips, reference.music, cfg.sample_rate), 3)
    trainer.step_count = cfg.d_warmup_steps  # time the full adversarial step
    trainer.step()  # warm-up
    t_step = timed(trainer.step, repeats=args.steps)
    t_interval = t_step * args.interval
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), default config")
    print(f"reference ({len(real)} real clips, once per dataset, cached): {t_reference:.2f} s")
    print(f"rollouts ({args.rollouts} x {args.seconds:g} s): {t_rollout:.2f} s")
    print(
        f"metrics + rollout detectors: {t_metrics:.2f} s, of which music embedding {t_music:.2f} s"
    )
    print(f"training: {t_step:.3f} s/step x {args.interval} steps = {t_interval:.0f} s")
    print(f"metrics / training interval: {100 * t_metrics / t_interval:.2f} % (target <= 10 %)")
    share = 100 * (t_metrics + t_rollout) / t_interval
    print(f"rollouts + metrics / training interval: {share:.2f} % (target <= 10 %)")


if __name__ == "__main__":
    main()
