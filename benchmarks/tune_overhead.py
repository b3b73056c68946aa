"""What share of a trial's wall time under Ray Tune is spent in training steps?

    python benchmarks/tune_overhead.py [--reports 4] [--steps-per-report 100] [--num-cpus 2]
                                       [--smoke]

Runs one trial of the default config on the built-in corpus (about 3 minutes on 2 cores),
through the real search path (OptunaSearch, ASHA, collapse stopper, checkpoints every
report), and prints the time in Trainer steps, in evaluation (rollouts + metrics), and the rest
(Tune, reporting, checkpointing, start-up) as shares of the trial's wall time.
Target: training >= 90 %. `--smoke`: the default config at `search --smoke`'s sizes (tiny
model and windows), 2 reports of 4 steps, 4 rollouts an evaluation.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from samplegan_tune.cli.search import connect_ray
from samplegan_tune.tuning import search
from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data
from samplegan_tune.tuning.space import SearchSettings

SPACE = {"description": "one default trial", "fixed": {}, "params": {"seed": {"int": [0, 1]}}}


def main() -> None:
    """Run one trial through the real search path and print the shares of its wall time spent
    training, evaluating and in the rest."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=4)
    parser.add_argument("--steps-per-report", type=int, default=100)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a tiny model, 2 reports of 4 steps")
    args = parser.parse_args()
    if args.smoke:
        args.reports, args.steps_per_report = 2, 4
    settings = SearchSettings(
        num_samples=1,
        steps_per_report=args.steps_per_report,
        max_reports=args.reports,
        grace_period=args.reports,
        cpus_per_trial=args.num_cpus,
        eval_rollouts=4 if args.smoke else 8,
        eval_seconds=1.0,
    )
    root = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    exp = Experiment(
        "overhead",
        root / "overhead",
        str(root),
        "one",
        yaml.safe_dump(SPACE),
        settings,
        ["synthetic"],
        1,
        baseline=False,
        smoke=args.smoke,  # the space's config capped to smoke size
    )
    data = prepare_trial_data(exp)
    exp.save()
    connect_ray(None, args.num_cpus)
    started = time.perf_counter()
    grid = search.build_tuner(exp, data).fit()
    driver_wall = time.perf_counter() - started
    frame = grid[0].metrics_dataframe
    wall = float(frame["time_total_s"].iloc[-1])
    train, evaluation = frame["time/train_s"].sum(), frame["time/eval_s"].sum()
    print(
        f"trial wall {wall:.1f} s ({len(frame)} reports of {args.steps_per_report} steps; "
        f"driver wall incl. Ray start {driver_wall:.1f} s)\n"
        f"training steps {100 * train / wall:.1f} % (target >= 90 %) | evaluation "
        f"{100 * evaluation / wall:.1f} % | Tune, reporting, checkpoints "
        f"{100 * (wall - train - evaluation) / wall:.1f} %"
    )


if __name__ == "__main__":
    main()
