"""Does TPE + ASHA beat plain random search? Compute to equal quality.

    python benchmarks/search_efficiency.py [--trials 24] [--seeds 0 1 2] [--num-cpus 2] [--smoke]

On the built-in corpus with a small space (tiny models; learning rates wide enough that some
trials collapse), runs our search and a baseline — random sampling, FIFO scheduling (no
early stopping) — with the same number of trials, for each seed. Both stop a trial that
collapses (the collapse stopper is part of either). Compute is counted in trial-iterations
(reports), each charged when it ran: no side is charged a report it did not run. Prints,
per seed: the compute each needed to reach the baseline's best quality, their ratio, the
total compute and the share spent on trials that collapsed. `--smoke`: 2 trials a side, one
seed, the space at `search --smoke`'s size (2 reports of 4 steps).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import yaml

from samplegan_tune.cli.search import connect_ray
from samplegan_tune.judge.collapse import REASON_METRIC
from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning import search
from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data
from samplegan_tune.tuning.space import parse_space

SPACE = """
description: benchmark space — tiny models, rates wide enough to collapse some trials
settings: {max_reports: 6, steps_per_report: 10, grace_period: 1, reduction_factor: 2,
           eval_rollouts: 4, eval_seconds: 1.0}
fixed: {segment: 128, context: 512, crossfade: 32, latent: 32, ae_channels: 8, ae_depth: 3,
        noise_dim: 8, g_channels: 32, g_depth: 3, d_channels: 8, d_depth: 3, d_kind: single,
        batch_size: 8, rollout_steps: 2, d_warmup_steps: 8}
params:
  lr_g: {loguniform: [1.0e-4, 3.0]}
  lr_d: {loguniform: [1.0e-4, 3.0]}
  adv_loss: {choice: [hinge, lsgan, ns]}
  lambda_recon_stft: {uniform: [0.0, 3.0]}
  max_gain_db: {uniform: [3.0, 12.0]}
"""
BENCH = parse_space("bench", yaml.safe_load(SPACE))  # fails fast on a bad space
SETTINGS, SMOKE_SETTINGS = BENCH.settings, BENCH.smoke().settings


def run_one(
    root: Path, seed: int, trials: int, baseline: bool, data: object, smoke: bool = False
) -> list[dict]:
    """Run one search (at smoke size with `smoke`); returns every report as {time, trial,
    score, collapsed}."""
    name = f"{'baseline' if baseline else 'ours'}-{seed}"
    exp = Experiment(
        name=name,
        folder=root / name,
        tune_storage=str(root),
        space_name="bench",
        space_yaml=SPACE,
        settings=SMOKE_SETTINGS if smoke else SETTINGS,
        data=["synthetic"],
        num_samples=trials,
        seed=seed,
        baseline=False,  # the samplers alone are compared: no defaults point on either side
        smoke=smoke,
    )
    exp.save()
    grid = search.build_tuner(exp, data, baseline=baseline).fit()
    search.close_open_trials(exp)
    reports = []
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None:
            continue
        for _, row in frame.iterrows():
            reason = row.get(REASON_METRIC) or ""
            reports.append(
                {
                    "time": row["timestamp"],
                    "trial": result.path,
                    "score": row[SCORE],
                    "collapsed": bool(reason),
                }
            )
    return sorted(reports, key=lambda r: r["time"])


def compute_to_reach(reports: list[dict], target: float) -> float:
    """Reports run (in time order, all trials) until a healthy one scores <= target."""
    for spent, r in enumerate(reports, start=1):
        if not r["collapsed"] and r["score"] <= target:
            return spent
    return math.inf


def collapsed_share(reports: list[dict]) -> float:
    """Share of the reports run that belong to trials that collapsed."""
    bad = {r["trial"] for r in reports if r["collapsed"]}
    return sum(r["trial"] in bad for r in reports) / max(len(reports), 1)


def main() -> None:
    """For each seed, run the baseline and our search with the same trials; print the compute each
    needed to reach the baseline's best score, and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 trials a side, 1 seed, tiny")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.seeds = 2, [0]
    root = Path(tempfile.mkdtemp(prefix="search-efficiency-"))
    settings = SMOKE_SETTINGS if args.smoke else SETTINGS
    probe = Experiment(
        "probe", root / "probe", str(root), "bench", SPACE, settings, ["synthetic"], 1
    )
    data = prepare_trial_data(probe)
    connect_ray(None, args.num_cpus)
    ratios = []
    print(
        "| seed | baseline best score | baseline reports to reach it | ours | ratio | "
        "reports on collapsed trials (baseline / ours) | reports run (baseline / ours) |\n"
        "|---|---|---|---|---|---|---|",
        flush=True,
    )
    for seed in args.seeds:
        base = run_one(root, seed, args.trials, True, data, args.smoke)
        ours = run_one(root, seed, args.trials, False, data, args.smoke)
        healthy = [r["score"] for r in base if not r["collapsed"]]
        target = min(healthy, default=math.inf)
        base_cost, ours_cost = compute_to_reach(base, target), compute_to_reach(ours, target)
        ratios.append(ours_cost / base_cost if math.isfinite(base_cost) else math.nan)
        print(
            f"| {seed} | {target:.3f} | {base_cost:.0f} | {ours_cost:.0f} | {ratios[-1]:.2f} | "
            f"{100 * collapsed_share(base):.0f} % / {100 * collapsed_share(ours):.0f} % | "
            f"{len(base)} / {len(ours)} |",
            flush=True,
        )
    finite = [r for r in ratios if math.isfinite(r)]  # ours never reaching it counts as inf
    median = statistics.median(finite) if finite else math.inf
    print(f"median ratio over {len(ratios)} seeds: {median:.2f} ({len(finite)} reached the target)")


if __name__ == "__main__":
    main()
