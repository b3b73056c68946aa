"""How many trials to pack on one device: 1, 2, 4, 8 training processes side by side.

    python benchmarks/pack_trials.py [--device cuda|cpu] [--counts 1 2 4 8] [--seconds 20]
                                     [--set key=value ...] [--json FILE] [--smoke]

Each process is one trial as a search runs it (its own Trainer on the shared device; Ray's
fractional `gpus_per_trial` isolates nothing either, so this is what Ray packing does to the
GPU). All processes warm up, wait at a barrier, then train for `--seconds`. Prints, per count,
the total adversarial steps/s of all processes, its ratio to one process alone, and the
largest peak memory of one process (CUDA) — the figure `gpus_per_trial` must leave room for.
`--smoke`: 1 and 2 processes of the `smoke` space's tiny model for 1 s, on the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from _smoke import tiny_sets

from samplegan_tune.audio.corpus import Corpus
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.config import load_config
from samplegan_tune.train.trainer import Trainer


def worker(rank: int, sets: list[str], device: str, seconds: float, barrier, results) -> None:
    """One trial: warm up, wait for the others, train `seconds`; put (steps, peak bytes)."""
    torch.set_num_threads(1)
    cfg = load_config(None, [*sets, f"seed={rank}"])
    corpus = Corpus.from_items(synthetic_songs(60.0, cfg.sample_rate, seed=rank), cfg.sample_rate)
    trainer = Trainer(cfg, corpus, device=device)
    trainer.step_count = cfg.ae_pretrain_steps + cfg.d_warmup_steps
    for _ in range(3):
        trainer.step()
    barrier.wait()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        trainer.step()
        steps += 1
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    results.put((steps / elapsed, peak))


def packed(count: int, sets: list[str], device: str, seconds: float) -> tuple[float, int]:
    """(total steps/s of `count` processes side by side, the largest peak memory of one)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(count), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(rank, sets, device, seconds, barrier, results))
        for rank in range(count)
    ]
    for p in procs:
        p.start()
    rates = [results.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    return sum(r for r, _ in rates), max(m for _, m in rates)


def main(argv: list[str] | None = None) -> list[dict]:
    """For each of --counts, train that many trials side by side; print a table row per count and
    return the rows (appended to --json as well)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="append the figures as JSON lines")
    parser.add_argument("--smoke", action="store_true", help="1 and 2 tiny trials, 1 s, CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.counts, args.seconds = "cpu", [1, 2], 1.0
        args.set = [*tiny_sets(beside=args.set), *args.set]
    rows, alone = [], None
    print(f"| trials on one {args.device} | total steps/s | × one alone | peak memory / trial |")
    print("|---|---|---|---|")
    for count in args.counts:
        rate, peak = packed(count, args.set, args.device, args.seconds)
        alone = alone or rate / count
        row = {
            "trials": count,
            "steps_per_s": rate,
            "ratio": rate / alone,
            "peak_gib": peak / 2**30,
            "config": " ".join(args.set) or "defaults",
        }
        print(f"| {count} | {rate:.2f} | {row['ratio']:.2f} | {row['peak_gib']:.2f} GiB |")
        rows.append(row)
    if args.json:
        with args.json.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


if __name__ == "__main__":
    main()
