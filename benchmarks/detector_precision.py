"""What does an early firing of a collapse detector predict? Precision and recall by
adversarial step, on real trials of a space trained on real music.

    python benchmarks/detector_precision.py --data DIR_OR_FILES... [--space narrow] \
        [--trials 12] [--reports 12] [--workers 2] [--seed 0] [--out FILE.jsonl] \
        [--from FILE.jsonl] [--smoke]

Trains `--trials` configurations of the space (its baseline, then random samples) for
`--reports` report intervals each, with every rollout detector recording but none stopping
(the grace period is the whole run; a non-finite or exploding trial still stops at once: it
counts as collapsed from then on). At every report, every detector is run on the report's
rollouts. The horizon is each trial's last report: a trial is collapsed there when any
detector fires (or it stopped). For each detector and adversarial step (steps after stage 1
and D's warm-up, what the search's grace counts):

- precision: of the trials it flags at that step, the share still collapsed at the horizon;
- recall: of the trials collapsed at the horizon, the share it flags at that step.

Then the stop policy this supports: per detector, the first step from which its precision is
≥ 90 % at every later step with ≥ `--min-flagged` flagged trials (none: it only flags).
Reports go to `--out` as JSON lines; `--from` re-tabulates them without training.
`--smoke`: 2 trials of the space at `search --smoke`'s size, 2 reports each, on synthetic songs
written to a temporary folder (also --out's default there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import optuna
import torch
from _smoke import folder, write_songs

from samplegan_tune.judge import collapse
from samplegan_tune.judge.metrics import NOISE_SPREAD, SCORE
from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data
from samplegan_tune.tuning.space import (
    SearchSpace,
    config_from_trial_params,
    load_space,
    resolve_space,
)
from samplegan_tune.tuning.trial import Trial

PRECISION = 0.9  # the bar for a detector to stop a trial
_DATA: dict[str, Any] = {}  # per worker process: (experiment, trial data)


def _space(name: str, smoke: bool) -> SearchSpace:
    space = load_space(name)
    return space.smoke() if smoke else space


def configs(space_name: str, trials: int, seed: int, smoke: bool = False) -> list[dict[str, Any]]:
    """The space's baseline, then random samples (trial params as Tune would pass them); the
    space at smoke size with `smoke`."""
    space = _space(space_name, smoke)
    points = [space.sample(optuna.trial.FixedTrial(space.baseline()))]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while len(points) < trials:
        points.append(space.sample(study.ask()))
    return points


def _experiment(space_name: str, data: list[str], reports: int, smoke: bool) -> Experiment:
    space = _space(space_name, smoke)
    settings = dataclasses.replace(
        space.settings, max_reports=reports, grace_period=reports, eval_rollouts=8
    )
    return Experiment(
        name="detectors",
        folder=Path(tempfile.mkdtemp()),
        tune_storage=None,
        space_name=space.name,
        space_yaml=resolve_space(space_name).read_text(),
        settings=settings,
        data=data,
        num_samples=1,
        smoke=smoke,
    )


def _worker_init(space_name: str, data: list[str], reports: int, smoke: bool) -> None:
    torch.set_num_threads(1)
    exp = _experiment(space_name, data, reports, smoke)
    _DATA["exp"], _DATA["data"] = exp, prepare_trial_data(exp)


def train_one(job: tuple[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every report of one trial: step, adversarial steps, score, every detector that fired."""
    index, params = job
    exp, data = _DATA["exp"], _DATA["data"]
    trial = Trial(config_from_trial_params(params), data, exp.settings)
    rows = []
    while not trial.finished:
        report = trial.run_interval()
        stopped = report[collapse.REASON_METRIC]  # only a training detector can stop here
        fired = [stopped] if stopped else []
        if trial.last_clips is not None:
            fired += collapse.rollout_reasons(
                trial.last_clips, data.reference, noise_spread=report.get(NOISE_SPREAD)
            )
        rows.append(
            {
                "trial": index,
                "report": trial.reports,
                "step": report["step"],
                "adversarial": report["train/adversarial_steps"],
                "score": report.get(SCORE),
                "fired": fired,
                "stopped": stopped,
                "params": params if trial.reports == 1 else None,
            }
        )
        print(
            f"trial {index} report {trial.reports}: step {report['step']}, fired {fired}",
            flush=True,
        )
        if stopped:
            break
    return rows


def table(
    rows: list[dict[str, Any]], min_flagged: int, bucket: int
) -> tuple[str, dict[str, int | None]]:
    """(markdown table, policy: detector -> first adversarial step it may stop at, or None).

    Adversarial steps are rounded up to a multiple of `bucket` (a report interval)."""
    for row in rows:
        row["adversarial"] = -(-row["adversarial"] // bucket) * bucket
    by_trial: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_trial[row["trial"]].append(row)
    last = {t: max(r, key=lambda x: x["report"]) for t, r in by_trial.items()}
    collapsed = {t for t, row in last.items() if row["fired"] or row["stopped"]}
    detectors = sorted({d for row in rows for d in row["fired"]})
    steps = sorted({r["adversarial"] for r in rows if r["adversarial"] > 0})
    lines = [
        f"{len(by_trial)} trials, {len(collapsed)} collapsed at their horizon "
        f"(report {max(r['report'] for r in last.values())}).",
        "",
        "| detector | adversarial steps | flagged | precision | recall |",
        "|---|---|---|---|---|",
    ]
    policy: dict[str, int | None] = {}
    for detector in detectors:
        cells = []
        for step in steps:
            at = {r["trial"] for r in rows if r["adversarial"] == step}
            flagged = {
                r["trial"] for r in rows if r["adversarial"] == step and detector in r["fired"]
            }
            if not at:
                continue
            hits = len(flagged & collapsed)
            precision = hits / len(flagged) if flagged else None
            recall = len(flagged & collapsed) / len(collapsed & at) if collapsed & at else None
            cells.append((step, len(flagged), precision))
            lines.append(
                f"| {detector} | {step} | {len(flagged)} | {_pct(precision)} | {_pct(recall)} |"
            )
        policy[detector] = _first_reliable(cells, min_flagged)
    return "\n".join(lines), policy


def _first_reliable(cells: list[tuple[int, int, float | None]], min_flagged: int) -> int | None:
    """The first step from which every step with ≥ min_flagged flags has precision ≥ 90 %
    (and there is at least one such step)."""
    for i, (step, _, _) in enumerate(cells):
        later = [(n, p) for _, n, p in cells[i:] if n >= min_flagged]
        if later and all(p is not None and p >= PRECISION for _, p in later):
            return step
    return None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def main() -> None:
    """Train the trials and write their reports to --out (or re-read --from), then print the
    precision/recall table and the stop policy it supports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", help="real music to train on")
    parser.add_argument("--space", default="narrow")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--reports", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-flagged", type=int, default=3)
    parser.add_argument("--bucket", type=int, default=100, help="adversarial steps per row")
    parser.add_argument("--out", type=Path, help="(default: detector_precision.jsonl)")
    parser.add_argument("--from", dest="source", type=Path, help="re-tabulate these reports")
    parser.add_argument("--smoke", action="store_true", help="2 tiny trials on synthetic songs")
    args = parser.parse_args()
    if args.smoke:
        _smoke_size(args)
    args.out = args.out or Path("detector_precision.jsonl")
    if args.source:
        rows = [json.loads(line) for line in args.source.read_text().splitlines()]
    else:
        jobs = list(enumerate(configs(args.space, args.trials, args.seed, args.smoke)))
        init = (args.space, args.data, args.reports, args.smoke)
        with multiprocessing.get_context("spawn").Pool(args.workers, _worker_init, init) as pool:
            rows = [row for trial in pool.imap_unordered(train_one, jobs) for row in trial]
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text, policy = table(rows, args.min_flagged, args.bucket)
    print(text)
    print("\npolicy (first adversarial step a detector may stop at; none: flags only):")
    print(json.dumps(policy, indent=2))


def _smoke_size(args: argparse.Namespace) -> None:
    """`args` shrunk in place for --smoke: 2 trials of 2 reports, bucketed by report, on two
    synthetic songs (unless --data or --from names the input), --out in the same folder."""
    where = folder("detector-precision")
    args.trials, args.reports, args.min_flagged = 2, 2, 1
    args.bucket = load_space(args.space).smoke().settings.steps_per_report
    if not (args.data or args.source):
        args.data = write_songs(where / "music", 2)
    args.out = args.out or where / "detector_precision.jsonl"


if __name__ == "__main__":
    main()
