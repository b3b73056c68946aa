"""Does TPE + ASHA + the collapse stopper beat plain random search? Compute to equal quality.

    python benchmarks/search_efficiency.py [--trials 12] [--seeds 0 1 2] [--num-cpus 2]

On the built-in corpus with a small space (tiny models; learning rates wide enough that some
trials collapse), runs our search and a baseline — random sampling, FIFO scheduling, no
collapse stopper — with the same number of trials, for each seed. Compute is counted in
trial-iterations (reports). A baseline trial is charged every report (with no early stopping
it would train to the end; ours stops collapsed trials at once, so it is not charged them).
Prints, per seed: the compute each needed to reach the baseline's best quality, their ratio
(target <= 1/3), and the share of compute spent on trials that collapsed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

from samplegan_tune import search
from samplegan_tune.collapse import REASON_METRIC
from samplegan_tune.experiment import Experiment, prepare_trial_data
from samplegan_tune.metrics import SCORE
from samplegan_tune.search_cli import connect_ray
from samplegan_tune.space import SearchSettings, parse_space

SPACE = """
description: benchmark space — tiny models, rates wide enough to collapse some trials
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
SETTINGS = SearchSettings(
    max_reports=6, steps_per_report=10, grace_period=1, reduction_factor=2,
    eval_rollouts=4, eval_seconds=1.0,
)  # fmt: skip


def run_one(root: Path, seed: int, trials: int, baseline: bool, data: object) -> list[dict]:
    """Run one search; returns every report as {time, trial, score, collapsed}."""
    name = f"{'baseline' if baseline else 'ours'}-{seed}"
    exp = Experiment(
        name=name, folder=root / name, tune_storage=str(root), space_name="bench",
        space_yaml=SPACE, settings=SETTINGS, data=["synthetic"], num_samples=trials, seed=seed,
    )  # fmt: skip
    exp.save()
    grid = search.build_tuner(exp, data, baseline=baseline).fit()
    reports = []
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None:
            continue
        for _, row in frame.iterrows():
            reason = row.get(REASON_METRIC) or ""
            reports.append({"time": row["timestamp"], "trial": result.path, "score": row[SCORE],
                            "collapsed": bool(reason)})  # fmt: skip
    search.close_open_trials(exp)
    return sorted(reports, key=lambda r: r["time"])


def compute_to_reach(reports: list[dict], target: float, charge_full: bool) -> float:
    """Trial-iterations spent until a healthy report scores <= target (inf if never)."""
    spent, seen = 0, set()
    for r in reports:
        if charge_full and r["trial"] not in seen:  # a baseline trial costs all its reports
            spent += SETTINGS.max_reports
        elif not charge_full:
            spent += 1
        seen.add(r["trial"])
        if not r["collapsed"] and r["score"] <= target:
            return spent
    return math.inf


def collapsed_share(reports: list[dict], charge_full: bool) -> float:
    trials: dict[str, list[dict]] = {}
    for r in reports:
        trials.setdefault(r["trial"], []).append(r)
    cost = {t: SETTINGS.max_reports if charge_full else len(rs) for t, rs in trials.items()}
    bad = sum(c for t, c in cost.items() if any(r["collapsed"] for r in trials[t]))
    return bad / max(sum(cost.values()), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    parse_space("bench", __import__("yaml").safe_load(SPACE))  # fail fast on a bad space
    root = Path(tempfile.mkdtemp(prefix="search-efficiency-"))
    probe = Experiment("probe", root / "probe", str(root), "bench", SPACE, SETTINGS,
                       ["synthetic"], 1)  # fmt: skip
    data = prepare_trial_data(probe)
    connect_ray(None, args.num_cpus)
    ratios = []
    for seed in args.seeds:
        base = run_one(root, seed, args.trials, True, data)
        ours = run_one(root, seed, args.trials, False, data)
        target = min(r["score"] for r in base if not r["collapsed"])
        base_cost = compute_to_reach(base, target, charge_full=True)
        ours_cost = compute_to_reach(ours, target, charge_full=False)
        ratios.append(ours_cost / base_cost)
        print(
            f"seed {seed}: baseline best {target:.3f} after {base_cost:.0f} trial-iterations "
            f"(of {args.trials * SETTINGS.max_reports}); ours reached it after {ours_cost:.0f} "
            f"of {len(ours)} -> ratio {ours_cost / base_cost:.2f} (target <= 0.33) | compute on "
            f"collapsed trials: baseline {100 * collapsed_share(base, True):.0f} %, "
            f"ours {100 * collapsed_share(ours, False):.0f} %",
            flush=True,
        )
    finite = [r for r in ratios if math.isfinite(r)]
    median = statistics.median(finite) if finite else math.inf
    print(f"median ratio over {len(ratios)} seeds: {median:.2f} ({len(finite)} reached the target)")


if __name__ == "__main__":
    main()
