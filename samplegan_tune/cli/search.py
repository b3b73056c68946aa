"""The search-family commands: search, resume, leaderboard, export, spaces.

Every input is checked (space, counts, storage, cluster address, data) before an experiment
folder is created, so bad input leaves nothing behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import check_output_dir
from samplegan_tune.core.lock import driver_lock, holder

if TYPE_CHECKING:  # the heavy modules (ray, torch) are imported when a command runs
    from samplegan_tune.tuning.experiment import Experiment
    from samplegan_tune.tuning.space import SearchSettings
    from samplegan_tune.tuning.trial import TrialData

DEFAULT_STORAGE = "results"
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")  # an experiment name: one folder
STORAGE_ENV = "SAMPLEGAN_STORAGE"  # set by the cluster YAMLs' setup commands


def add_search_commands(commands: argparse._SubParsersAction) -> None:
    """The search's commands: search, resume, leaderboard, export, spaces, cluster."""
    _add_search(commands.add_parser("search", help="Ray Tune + Optuna search over a space"))
    p = commands.add_parser("resume", help="continue an interrupted search")
    p.add_argument("experiment", type=Path, help="the experiment folder, results/NAME")
    p.add_argument("--address", help="Ray cluster (none: the search's own, or a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (none: all)")
    p = commands.add_parser("leaderboard", help="re-rank a search's survivors")
    p.add_argument("experiment", type=Path, help="the experiment folder, results/NAME")
    p.add_argument("--top-k", type=int, help="candidates to re-evaluate (none: the space's)")
    p = commands.add_parser("export", help="write a ranked model to a standalone folder")
    p.add_argument("experiment", type=Path, help="the experiment folder, results/NAME")
    p.add_argument("--rank", type=int, default=1, help="which leaderboard rank")
    p.add_argument("--out", type=Path, required=True, help="the folder to write")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    commands.add_parser("spaces", help="list the built-in search spaces")
    p = commands.add_parser("cluster", help="Ray cluster configurations")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("validate", help="check a cluster YAML offline").add_argument("file")


def _add_search(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="a built-in space name or a YAML file")
    p.add_argument(
        "--data",
        nargs="+",
        default=["synthetic"],
        help="audio files/folders, or 'synthetic' (the built-in corpus)",
    )
    p.add_argument("--num-samples", type=int, help="trials (none: the space's)")
    p.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE),
        help=f"folder, or s3://… for clusters (${STORAGE_ENV} when set)",
    )
    p.add_argument("--name", help="experiment name (none: search-SPACE-TIME)")
    p.add_argument("--address", help="Ray cluster: auto or HOST:PORT (none: a local Ray)")
    p.add_argument("--cpus-per-trial", type=float, help="(none: the space's)")
    p.add_argument("--gpus-per-trial", type=float, help="fractions share a GPU (none: the space's)")
    p.add_argument("--max-concurrent", type=int, help="(none: the space's; 0 = no limit)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="stop the search after this long, ranking what trained (none: the "
        "space's time_budget; 0: no limit)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds Optuna's sampler")
    p.add_argument(
        "--try",
        dest="start_points",
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="a configuration to try first; repeatable",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not try the space's defaults (the measured best config) first",
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (none: all)")
    p.add_argument(
        "--cache-dir",
        help="prepared-corpus cache (none: $SAMPLEGAN_CACHE or ~/.cache/samplegan-tune)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="the space at smoke size (tiny models, windows and steps, every param still "
        "sampled): checks a space end to end in minutes",
    )


def run_cluster(args: argparse.Namespace) -> int:
    """`cluster`: validate a Ray cluster file and print what it describes."""
    from samplegan_tune.tuning.cluster import validate_cluster_file

    prepared = validate_cluster_file(args.file)
    types = ", ".join(prepared["available_node_types"])
    print(
        f"ok: {args.file} ({prepared['provider']['type']}; head {prepared['head_node_type']};"
        f" node types {types})"
    )
    return 0


def run_spaces(args: argparse.Namespace) -> int:
    """`spaces`: print each built-in space's name and description."""
    from samplegan_tune.tuning.space import list_spaces

    for name, description in list_spaces().items():
        print(f"{name:10s} {description}")
    return 0


def _time_budget(settings: SearchSettings, args: argparse.Namespace) -> float | None:
    """Seconds the search may run: --time-budget, else the space's; None for no limit."""
    budget = settings.time_budget if args.time_budget is None else args.time_budget
    return budget or None


def run_search(args: argparse.Namespace) -> int:
    """`search`: check the input, create the experiment, search and rank; returns 130 when
    interrupted, else 0."""
    from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data
    from samplegan_tune.tuning.space import load_space, resolve_space
    from samplegan_tune.tuning.start_points import parse_point

    space = load_space(args.space)
    if args.smoke:
        space = space.smoke()
    settings = _settings(space.settings, args)
    _check_num_cpus(args.num_cpus)
    start_points = [parse_point(text, space) for text in args.start_points]
    num_samples = settings.num_samples if args.num_samples is None else args.num_samples
    if num_samples < 1:
        raise UserInputError(f"--num-samples {num_samples}: must be ≥ 1")
    name = args.name or f"search-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, tune_storage = _storage(args.storage, name)
    exp = Experiment(
        name=name,
        folder=folder,
        tune_storage=tune_storage,
        space_name=space.name,
        space_yaml=resolve_space(args.space).read_text(),
        settings=settings,
        data=args.data,
        num_samples=num_samples,
        seed=args.seed,
        time_budget=_time_budget(settings, args),
        start_points=start_points,
        address=args.address,
        cache_dir=args.cache_dir,
        smoke=args.smoke,
        baseline=args.baseline,
    )
    data = prepare_trial_data(exp)
    print(f"data: {data.description}", flush=True)
    connect_ray(args.address, args.num_cpus)
    if args.address is None:
        exp.settings = fit_local_resources(exp.settings, explicit=_explicit_resources(args))
    _claim(exp.folder)
    with driver_lock(exp.folder, "search"):
        exp.save()
        budget = f", ranked after {exp.time_budget:g} s at most" if exp.time_budget else ""
        print(
            f"experiment: {exp.folder} ({num_samples} trials of space {space.name}{budget})",
            flush=True,
        )
        return _search_and_rank(exp, data, resume=False)


def run_resume(args: argparse.Namespace) -> int:
    """`resume`: continue an interrupted search under the experiment's lock, then rank it; returns
    130 when interrupted again, else 0."""
    from samplegan_tune.tuning.experiment import Experiment

    _check_num_cpus(args.num_cpus)
    exp = Experiment.load(args.experiment)
    check_output_dir(exp.folder)
    with driver_lock(exp.folder, "resume"):
        return _resume(exp, args)


def _resume(exp: Experiment, args: argparse.Namespace) -> int:
    """`resume` once it holds the experiment's lock."""
    from ray import tune

    from samplegan_tune.tuning.experiment import prepare_trial_data

    if not tune.Tuner.can_restore(exp.tune_path):
        raise UserInputError(f"{exp.folder}: nothing to resume (no Tune state was saved yet)")
    exp.check_study()
    exp.check_tune_state()
    remaining = _unfinished(exp)
    if remaining == 0 and (exp.folder / "leaderboard.json").is_file():
        raise UserInputError(
            f"{exp.folder}: nothing to resume; all {exp.num_samples} trials finished and are "
            "ranked (see leaderboard.md)"
        )
    data = prepare_trial_data(exp)
    address = args.address or exp.address
    connect_ray(address, args.num_cpus)
    if address is None:
        exp.settings = fit_local_resources(exp.settings, explicit=())
    print(f"resuming {exp.name}: {remaining} of {exp.num_samples} trials unfinished", flush=True)
    return _search_and_rank(exp, data, resume=True)


def run_leaderboard(args: argparse.Namespace) -> int:
    """`leaderboard`: re-rank the survivors; rewrite the leaderboard, listening page and dashboard
    media."""
    from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data

    if args.top_k is not None and args.top_k < 1:
        raise UserInputError(f"--top-k {args.top_k}: must be ≥ 1")
    exp = Experiment.load(args.experiment)
    check_output_dir(exp.folder)
    with driver_lock(exp.folder, "leaderboard"):  # it rewrites the leaderboard and page
        exp.check_study()
        exp.check_tune_state()
        _rank_and_report(exp, prepare_trial_data(exp), args.top_k)
        stopped = _interrupted(exp)
    if stopped:
        print(
            f"note: this search was interrupted with {stopped} trial(s) unfinished; the "
            f"leaderboard ranks what had trained. Finish it: samplegan-tune resume {exp.folder}",
            flush=True,
        )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """`export`: write the model ranked --rank to the folder --out; say how to generate with it."""
    from samplegan_tune.report.export import export

    out = export(args.experiment, args.rank, args.out, args.force)
    print(f"exported rank {args.rank} to {out}")
    print(f"generate: samplegan-tune generate {out} --seconds 8 --out continuation.wav")
    return 0


def _search_and_rank(exp: Experiment, data: TrialData, resume: bool) -> int:
    """Run the search (or resume it; a resume with nothing left to run only ranks)."""
    from samplegan_tune.tuning import final_fit, search

    print(
        f"TensorBoard: tensorboard --logdir {exp.tune_path}  (trials' curves, audio, HPARAMS)",
        flush=True,
    )
    started = time.monotonic()
    if (not resume or _unfinished(exp) > 0) and search.run(exp, data, resume=resume):
        finished = exp.num_samples - _unfinished(exp)
        print(
            f"interrupted: {finished} of {exp.num_samples} trials finished; go on with:"
            f" samplegan-tune resume {exp.folder}",
            flush=True,
        )
        return 130
    if final_fit.run(exp, data, None if resume else time.monotonic() - started):
        print(
            f"interrupted during the final fit; go on with: samplegan-tune resume {exp.folder}",
            flush=True,
        )
        return 130
    _rank_and_report(exp, data, None)
    return 0


def _rank_and_report(exp: Experiment, data: TrialData, top_k: int | None) -> None:
    from samplegan_tune.report import listening
    from samplegan_tune.tuning import dashboard, ranking

    board = ranking.rank(exp, data, top_k)
    _, summaries = ranking.load_trials(exp)
    page = listening.write_page(exp, data, board, summaries)
    dashboard.name_objective(exp)  # also for a study from before it was named
    dashboard.attach_media(exp, board)
    print((exp.folder / "leaderboard.md").read_text())
    if not board.entries:
        print(_why_no_survivor(summaries))
    elif board.entries[0].flags:
        print(
            "no trial passed the collapse detectors: the leaderboard lists the best attempts, "
            "each flagged with its failure (column `flagged`)"
        )
    elif board.entries[0].baseline:
        print(
            "the search found nothing better than its baseline (the space's defaults, the "
            "measured best configuration): rank 1 is the baseline"
        )
    print(f"leaderboard: {exp.folder / 'leaderboard.csv'}\nlistening page: {page}")
    print(f"optuna-dashboard: {dashboard.command(exp)}  (pip install optuna-dashboard)")


def _why_no_survivor(summaries: list) -> str:
    """Why the leaderboard is empty, saying what really happened to the trials."""
    if not summaries:
        return "no trial ran (nothing was trained): see the search's output above"
    outcomes = [s.outcome for s in summaries]
    counts = ", ".join(f"{o} {outcomes.count(o)}" for o in sorted(set(outcomes)))
    return f"no trial survived ({counts}); see the listening page for each one's reason"


def _unfinished(exp: Experiment) -> int:
    statuses = _tune_statuses(exp.tune_path)
    if statuses is None:
        return exp.num_samples
    return exp.num_samples - sum(s in ("TERMINATED", "ERROR") for s in statuses)


def _interrupted(exp: Experiment) -> int:
    """Trials (of the search and its final fit) that Tune's saved state has still running or
    pending: the driver was stopped before they ended (a search that ran out its budget or
    its trials leaves none)."""
    paths = [exp.tune_path, exp.final_path]
    statuses = [s for path in paths for s in (_tune_statuses(path) or [])]
    return sum(s not in ("TERMINATED", "ERROR") for s in statuses)


def _tune_statuses(path: Path) -> list[str] | None:
    """The status of each trial in the Tune state at `path`; None where there is none."""
    import logging

    from ray import tune

    # A trial that never reported has no result file: Ray warns; for a count that is noise.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if "://" not in str(path) and not Path(path).is_dir():  # remote storage: Tune reads it
        return None
    try:
        return [t.status for t in tune.ExperimentAnalysis(str(path)).trials]
    except (ValueError, FileNotFoundError, OSError):
        return None


def _settings(settings: SearchSettings, args: argparse.Namespace) -> SearchSettings:
    changes = {
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_concurrent": args.max_concurrent,
    }
    for key, value in changes.items():
        # --max-concurrent 0 is the space's own "no limit", as --help says
        smallest = {"gpus_per_trial": 0, "cpus_per_trial": 0.01, "max_concurrent": 0}[key]
        if value is not None and not (math.isfinite(value) and value >= smallest):
            raise UserInputError(
                f"--{key.replace('_', '-')} {value}: must be a finite number ≥ {smallest:g}"
            )
    budget = args.time_budget
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise UserInputError(
            f"--time-budget {budget}: must be a finite number of seconds ≥ 0 (0: none)"
        )
    return dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})


def _check_num_cpus(num_cpus: int | None) -> None:
    """Refuse a local Ray of no CPUs: every trial would wait for one forever (Ray raised)."""
    if num_cpus is not None and num_cpus < 1:
        raise UserInputError(f"--num-cpus {num_cpus}: must be ≥ 1 (none: all this machine's)")


def _explicit_resources(args: argparse.Namespace) -> tuple[str, ...]:
    """The resource flags the user gave (a space's default may be lowered; a flag is not)."""
    flags = {"cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial}
    return tuple(k for k, v in flags.items() if v is not None)


def fit_local_resources(settings: SearchSettings, explicit: tuple[str, ...]) -> SearchSettings:
    """Trial resources a local Ray can grant: never wait forever for a GPU that is not there.

    A request from the space's defaults is lowered, saying so in one line; one the user
    gave with a flag is refused with the fix (UserInputError).
    """
    import ray

    have = ray.cluster_resources()
    changes = {}
    for key, kind in (("gpus_per_trial", "GPU"), ("cpus_per_trial", "CPU")):
        asked, available = getattr(settings, key), have.get(kind, 0.0)
        if asked <= available:
            continue
        flag = f"--{key.replace('_', '-')}"
        fix = 0 if kind == "GPU" else available
        if key in explicit:
            raise UserInputError(
                f"{flag} {asked:g}: this machine's Ray has {available:g} {kind}; use {flag} "
                f"{fix:g} here, or --address to run on a cluster"
            )
        changes[key] = fix
        print(
            f"resources: the space asks {asked:g} {kind} per trial, this machine has "
            f"{available:g}: using {flag} {fix:g} (on a cluster, pass --address)",
            flush=True,
        )
    return dataclasses.replace(settings, **changes)


def _storage(storage: str, name: str) -> tuple[Path, str]:
    """(local experiment folder, Tune storage_path) for --storage."""
    if not NAME.fullmatch(name):
        raise UserInputError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (no path: the experiment "
            "goes into --storage), not starting with '.'"
        )
    if "://" in storage:  # remote: Tune writes there; our own files stay in results/
        return Path(DEFAULT_STORAGE) / name, storage
    root = check_output_dir(storage).resolve()
    folder = root / name
    if folder.exists():
        _taken(folder)
    return folder, str(root)


def _claim(folder: Path) -> None:
    """Make the new experiment's folder; refuse if another search made it meanwhile."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        _taken(folder)


def _taken(folder: Path) -> None:
    running = holder(folder)
    driving = f" and its driver is running ({running})" if running else ""
    raise UserInputError(
        f"{folder}: an experiment of that name exists{driving}; pick another --name"
    )


def connect_ray(address: str | None, num_cpus: int | None) -> None:
    """Start a local Ray on loopback, or join the cluster at `address` (fail fast if none)."""
    import ray

    # Trial output is noise here: errors reach the progress line and the trials' error files.
    quiet = {"configure_logging": False, "log_to_driver": False}
    if address is None:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
        return
    if address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as err:
            raise UserInputError(f"--address {address}: no Ray cluster answers there") from err
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        why = next(iter(str(err).splitlines()), type(err).__name__)
        raise UserInputError(
            f"--address {address}: cannot join a Ray cluster ({why}). A cluster with token "
            "authentication needs its token here: ~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or "
            "$RAY_AUTH_TOKEN"
        ) from err
