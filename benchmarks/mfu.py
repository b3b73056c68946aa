"""Model FLOPs utilisation (MFU): training, generation and the judge against the device's peak.

    python benchmarks/mfu.py [--device cpu|cuda] [--dtype fp32|bf16] [--set key=value ...]
                             [--steps 10] [--warmup 3] [--skip generate,judge] [--json FILE]
                             [--smoke]

For one config (the defaults; `--set` overrides, e.g. `--set batch_size=32`,
`--set model_family=latent --set ae_pretrain_steps=1`):
  * model FLOPs per adversarial `Trainer.step()` (torch's FlopCounterMode: every matmul and
    convolution, forward and backward), the step's median wall time, achieved FLOP/s;
    `--baseline fused_step=false` times the plain step beside it, steps interleaved;
  * the device's measured peak in the same dtype and process: a large matmul (2048³ on CPU,
    8192³ on CUDA) and a 64-channel conv1d; MFU = achieved / matmul peak;
  * generation (`rollout`, one stream): samples/s and the real-time factor;
  * the judge (a report's rollouts + metrics + detectors, the `narrow` space's settings) as a
    share of the training between two reports.
`--dtype bf16` sets `precision=bf16` (autocast); fp32 sets `precision=fp32`. `--smoke`: every
part at a tiny size (the `smoke` space's model, 2 steps, the plain step beside it, the judge at
`search --smoke`'s size), on the CPU unless --device cuda.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _smoke import tiny_sets
from torch.utils.flop_counter import FlopCounterMode

from samplegan_tune.audio.corpus import Corpus, split_corpus
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.config import load_config
from samplegan_tune.judge import collapse
from samplegan_tune.judge.metrics import RealReference
from samplegan_tune.train.rollout import rollout
from samplegan_tune.train.trainer import Trainer
from samplegan_tune.tuning.space import load_space
from samplegan_tune.tuning.trial import reference_clips, score_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    """Wait for the work queued on a CUDA `device` (a CPU has nothing to wait for)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall seconds of `fn()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """Model FLOPs of one `fn()` call, as torch's flop counter sees them."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul in `dtype` on `device`."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = median_time(
        lambda: a @ b, device, repeats=10 if device.type == "cuda" else 5, warmup=2
    )
    return 2 * n**3 / seconds


def conv_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a 64 -> 64 channel, kernel-9 conv1d over a long batch (forward only)."""
    length, batch = (1 << 16, 64) if device.type == "cuda" else (1 << 14, 8)
    x = torch.randn(batch, 64, length, device=device, dtype=dtype)
    w = torch.randn(64, 64, 9, device=device, dtype=dtype)
    run = lambda: torch.nn.functional.conv1d(x, w, padding=4)  # noqa: E731
    return count_flops(run) / median_time(run, device, repeats=5, warmup=2)


def training(trainers: dict[str, Trainer], steps: int, warmup: int) -> dict[str, float]:
    """FLOPs, seconds and FLOP/s of one adversarial step of each trainer, their steps
    interleaved (drift on a shared machine hits every side alike). FLOP/s count the math's
    FLOPs: those of the optimised step (`fused_step`), which skips work no result reads."""
    for trainer in trainers.values():
        trainer.step_count = trainer.cfg.ae_pretrain_steps + trainer.cfg.d_warmup_steps
        trainer.step()  # first call: lazy init
    counted = {name: count_flops(t.step) for name, t in trainers.items()}
    useful = min(counted.values())
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for i in range(warmup + steps):
        for name, trainer in trainers.items():
            seconds = median_time(trainer.step, trainer.device, repeats=1, warmup=0)
            if i >= warmup:
                times[name].append(seconds)
    out: dict[str, float] = {}
    for name in trainers:
        seconds = statistics.median(times[name])
        prefix = "" if name == "optimised" else f"{name}_"
        out.update(
            {
                f"{prefix}gflop_counted": counted[name] / 1e9,
                f"{prefix}step_s": seconds,
                f"{prefix}steps_per_s": 1 / seconds,
                f"{prefix}gflops": useful / seconds / 1e9,
            }
        )
    out["gflop_per_step"] = useful / 1e9
    return out


def generation(trainer: Trainer, seconds: float) -> dict[str, float]:
    """One stream continued for `seconds`: samples/s, real-time factor, FLOP/s."""
    cfg, model = trainer.cfg, trainer.model
    primer = trainer.eval_sampler.fixed_windows(1, cfg.context, seed=7)
    length = round(seconds * cfg.sample_rate)
    model.eval()
    run = lambda: rollout(model, primer, length, seed=0)  # noqa: E731
    flops = count_flops(run)
    wall = median_time(run, trainer.device, repeats=3, warmup=1)
    model.train()
    return {
        "gen_samples_per_s": length / wall,
        "gen_realtime_factor": seconds / wall,
        "gen_gflops": flops / wall / 1e9,
    }


def judge(trainer: Trainer, heldout: Corpus, step_s: float, smoke: bool) -> dict[str, float]:
    """A report's evaluation (narrow's rollouts, seconds; at `search --smoke`'s size with
    `smoke`) vs its training interval."""
    narrow = load_space("narrow")
    settings = (narrow.smoke() if smoke else narrow).settings
    primers, clips = reference_clips(heldout, settings, trainer.cfg.sample_rate)
    reference = RealReference.from_clips(clips, trainer.cfg.sample_rate, primers=primers)
    started = time.perf_counter()
    args = (settings.eval_rollouts, settings.eval_seconds)
    values, _, generated = score_model(trainer.model, heldout, reference, *args)
    collapse.CollapseMonitor().check_rollouts(
        generated, reference, values.get("quality/noise_spread")
    )
    seconds = time.perf_counter() - started
    interval = step_s * settings.steps_per_report
    return {"judge_s": seconds, "train_interval_s": interval, "judge_share": seconds / interval}


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure training (MFU against the measured peaks), and generation and the judge unless --skip
    names them; print the figures, append them to --json and return them."""
    args = _parser().parse_args(argv)
    if args.smoke:
        _smoke_size(args)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("mfu.py: --device cuda but torch sees no CUDA device")
    cfg = load_config(None, [*args.set, f"precision={args.dtype}"])
    corpus = Corpus.from_items(synthetic_songs(120.0, cfg.sample_rate, seed=0), cfg.sample_rate)
    train, heldout = split_corpus(corpus, 0.25, min_samples=cfg.window)
    trainer = Trainer(cfg, train, heldout, device=device)
    trainers = {"optimised": trainer}
    if args.baseline:
        plain = load_config(None, [*args.set, f"precision={args.dtype}", *args.baseline])
        trainers["baseline"] = Trainer(plain, train, heldout, device=device)
    dtype = DTYPES[args.dtype]
    r: dict[str, float | str] = {
        "device": args.device,
        "dtype": args.dtype,
        "config": " ".join(args.set) or "defaults",
    }
    peaks = [(matmul_peak(device, dtype), conv_peak(device, dtype))]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    r.update(training(trainers, args.steps, args.warmup))
    if device.type == "cuda":
        r["train_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    # The peaks again after training: a shared machine's load during one reading would
    # lower the peak and flatter the ratio; the higher reading of each counts.
    peaks.append((matmul_peak(device, dtype), conv_peak(device, dtype)))
    r["matmul_peak_gflops"] = max(m for m, _ in peaks) / 1e9
    r["conv_peak_gflops"] = max(c for _, c in peaks) / 1e9
    r["mfu"] = r["gflops"] / r["matmul_peak_gflops"]
    if args.baseline:
        r["baseline"] = " ".join(args.baseline)
        r["baseline_mfu"] = r["baseline_gflops"] / r["matmul_peak_gflops"]
    r["conv_utilisation"] = r["gflops"] / r["conv_peak_gflops"]
    skip = set(filter(None, args.skip.split(",")))
    if "generate" not in skip:
        r.update(generation(trainer, args.gen_seconds))
    if "judge" not in skip:
        r.update(judge(trainer, heldout, r["step_s"], args.smoke))
    report(r)
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(r) + "\n")
    return r


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also time a second trainer with these overrides, interleaved "
        "(e.g. fused_step=false: the plain step)",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gen-seconds", type=float, default=4.0)
    parser.add_argument("--skip", default="", help="comma list of: generate, judge")
    parser.add_argument("--json", type=Path, help="append the figures as one JSON line")
    parser.add_argument("--smoke", action="store_true", help="every part at a tiny size")
    return parser


def _smoke_size(args: argparse.Namespace) -> None:
    """`args` shrunk in place for --smoke: the tiny model (a --set still wins), 2 steps after 1,
    half a second generated, the plain step timed beside (unless --baseline names another)."""
    args.steps, args.warmup, args.gen_seconds = 2, 1, 0.5
    args.set = [*tiny_sets(beside=args.set), *args.set]
    args.baseline = args.baseline or ["fused_step=false"]


def report(r: dict) -> None:
    """Print the figures `main` measured, a line per part."""
    name = (
        torch.cuda.get_device_name()
        if r["device"] == "cuda"
        else f"{torch.get_num_threads()} CPU threads"
    )
    print(f"torch {torch.__version__}, {name}, {r['dtype']}, {r['config']}")
    print(
        f"  peak: matmul {r['matmul_peak_gflops']:.0f} GFLOP/s, "
        f"conv1d {r['conv_peak_gflops']:.0f} GFLOP/s"
    )
    print(
        f"  train: {r['gflop_per_step']:.2f} GFLOP/step, {r['steps_per_s']:.2f} steps/s, "
        f"{r['gflops']:.1f} GFLOP/s = MFU {100 * r['mfu']:.1f} % of matmul peak "
        f"({100 * r['conv_utilisation']:.1f} % of conv peak)"
    )
    if "baseline" in r:
        print(
            f"  baseline ({r['baseline']}): {r['baseline_steps_per_s']:.2f} steps/s = MFU "
            f"{100 * r['baseline_mfu']:.1f} % | optimised / baseline steps/s: "
            f"{r['steps_per_s'] / r['baseline_steps_per_s']:.2f}x (counted GFLOP/step: "
            f"{r['baseline_gflop_counted']:.2f} baseline, {r['gflop_counted']:.2f} optimised)"
        )
    if "train_peak_gib" in r:
        print(f"  peak memory while training: {r['train_peak_gib']:.2f} GiB")
    if "gen_samples_per_s" in r:
        print(
            f"  generate: {r['gen_samples_per_s']:.0f} samples/s, "
            f"{r['gen_realtime_factor']:.2f}x real time, {r['gen_gflops']:.1f} GFLOP/s"
        )
    if "judge_s" in r:
        print(
            f"  judge: {r['judge_s']:.2f} s per report vs {r['train_interval_s']:.0f} s of "
            f"training = {100 * r['judge_share']:.1f} % (target <= 10 %)"
        )


if __name__ == "__main__":
    main()
