"""`samplegan-tune` command line: every input is checked before any work starts."""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from samplegan_tune.cli import search as search_cli
from samplegan_tune.cli.evaluate import add_evaluate_arguments, evaluate_from_args
from samplegan_tune.cli.search import add_search_commands
from samplegan_tune.core.errors import UserInputError

if TYPE_CHECKING:  # torch is imported lazily so that --help and input errors answer at once
    import torch

    from samplegan_tune.core.config import TrainConfig

DEFAULT_TRAIN_OUT = Path("results") / "train"
PRIMER_SECONDS = 1.0  # the primer a continuation follows (the model reads its last C samples)


def build_parser() -> argparse.ArgumentParser:
    """The `samplegan-tune` parser with every command (each command's --help shows defaults)."""
    parser = argparse.ArgumentParser(
        prog="samplegan-tune",
        description="Autoencoder-seeded raw-audio GAN: train, search, rank, export, generate.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands.add_parser("train", help="train one model (no Ray)"))
    _add_generate(commands.add_parser("generate", help="make a WAV from a trained model"))
    add_search_commands(commands)
    add_evaluate_arguments(commands.add_parser("evaluate", help="quality metrics of audio"))
    _show_defaults(parser)
    return parser


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help when it has a default worth naming."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unnamed = default is None or default is False or default == [] or "%(default)" in text
        if unnamed or default == argparse.SUPPRESS:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        return f"{text} (default: {shown})"


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's --help shows each option's default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.formatter_class = _DefaultsFormatter
                _show_defaults(sub)


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        nargs="+",
        default=["synthetic"],
        help="audio files/folders, or 'synthetic' (built-in corpus, the default)",
    )
    p.add_argument("--config", help="YAML file of config keys (see samplegan_tune/core/config.py)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key; repeatable",
    )
    p.add_argument("--steps", type=int, default=2000, help="train until this step (total)")
    p.add_argument("--out", type=Path, default=DEFAULT_TRAIN_OUT, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CUDA when present, else CPU",
    )
    p.add_argument("--log-every", type=int, default=25, help="steps between progress lines")
    p.add_argument("--eval-every", type=int, default=250, help="steps between evaluations")
    p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    p.add_argument(
        "--cache-dir",
        help="prepared-corpus cache (none: $SAMPLEGAN_CACHE or ~/.cache/samplegan-tune)",
    )


def _add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an exported folder, a train run folder or a checkpoint .pt")
    p.add_argument("--seconds", type=float, required=True, help="length of the continuation")
    p.add_argument("--out", type=Path, required=True, help="the WAV file to write")
    p.add_argument(
        "--prime",
        help="audio file whose audio before --offset seeds the context (none: quiet noise)",
    )
    p.add_argument(
        "--offset",
        type=float,
        metavar="SECONDS",
        help="where in --prime the primer ends (none: the file's end)",
    )
    p.add_argument(
        "--level-dbfs",
        type=float,
        metavar="DB",
        help="play it as if the primer were at this RMS level (none: the primer's own)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the generator's noise")
    p.add_argument(
        "--include-prime",
        action="store_true",
        help=f"put the primer (≤ {PRIMER_SECONDS:g} s) before it",
    )
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where to run")


MAX_GENERATE_SECONDS = 3600.0  # an hour of audio: beyond it, a typo rather than a wish


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv`; returns the exit status (2: bad input, 130: interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="warning: %(message)s", stream=sys.stderr)
    handlers = {
        "train": run_train,
        "generate": run_generate,
        "evaluate": evaluate_from_args,
        "search": search_cli.run_search,
        "resume": search_cli.run_resume,
        "leaderboard": search_cli.run_leaderboard,
        "export": search_cli.run_export,
        "spaces": search_cli.run_spaces,
        "cluster": search_cli.run_cluster,
    }
    try:
        return handlers[args.command](args)
    except UserInputError as err:
        print(f"samplegan-tune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130


def run_train(args: argparse.Namespace) -> int:
    """`train`: train one model in --out (or --resume it); returns 1 when it collapsed, else 0."""
    from samplegan_tune.core.config import TrainConfig
    from samplegan_tune.core.fileio import check_output_dir
    from samplegan_tune.models.checkpoint import LAST, load_checkpoint
    from samplegan_tune.train.run import Intervals, prepare_data, train
    from samplegan_tune.train.trainer import Trainer

    _require_positive(
        steps=args.steps,
        log_every=args.log_every,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
    )
    out = check_output_dir(args.out)
    has_run = (out / LAST).exists()
    if args.resume and not has_run:
        raise UserInputError(f"{out}: nothing to resume (no {LAST} there)")
    if args.resume and (args.config or args.set):
        raise UserInputError("--resume continues with the run's own config; drop --config/--set")
    if has_run and not (args.resume or args.force):
        raise UserInputError(f"{out}: holds a run already; pass --resume or --force")
    _check_run_folder(out)
    if args.force and not args.resume:  # the old run's curves and checkpoints, not mixed in
        for own in RUN_FOLDERS:
            shutil.rmtree(out / own, ignore_errors=True)
    state = load_checkpoint(out / LAST) if args.resume else None
    if state and state["step"] >= args.steps:
        raise UserInputError(
            f"--steps {args.steps}: the run in {out} is at step {state['step']} already; "
            "--steps is the total to reach, so give a larger one"
        )
    cfg = TrainConfig.from_dict(state["config"]) if state else _train_config(args)
    device = _device(args.device)
    train_corpus, heldout = prepare_data(args.data, cfg, args.cache_dir)
    print(
        f"data: {train_corpus.seconds:.0f} s for training, {heldout.seconds:.0f} s held out, "
        f"{len(train_corpus.names) + len(heldout.names)} file(s) | device: {device}",
        flush=True,
    )
    trainer = Trainer(cfg, train_corpus, heldout, device)
    if state:
        trainer.load_state_dict(state)
    every = Intervals(args.log_every, args.eval_every, args.checkpoint_every)
    collapsed = train(trainer, out, args.steps, every)
    checkpoint = out / LAST
    kept = f"checkpoint: {checkpoint}" if checkpoint.exists() else "no checkpoint was written"
    print(f"{kept}\nTensorBoard: tensorboard --logdir {out / 'tb'}")
    return 1 if collapsed else 0


RUN_FOLDERS = ("tb", "checkpoints")  # what a run writes, besides its config.yaml


def _check_run_folder(out: Path) -> None:
    """Refuse a --out that holds anything but a run's own files (hidden ones aside): train
    would write its config.yaml over a user's, and mix its folders into theirs."""
    if not out.is_dir():
        return
    own = {"config.yaml", *RUN_FOLDERS}
    others = sorted(p.name for p in out.iterdir() if p.name not in own and p.name[0] != ".")
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise UserInputError(
            f"{out}: holds files that are not a run's ({shown}); train into a new or empty folder"
        )


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """--config, then --set; an error names the one at fault (the file's own, or --set's)."""
    from samplegan_tune.core.config import load_config

    load_config(args.config)  # the file alone: its errors name it
    try:
        return load_config(args.config, args.set)
    except UserInputError as err:  # the file was fine: --set broke it
        why = str(err).removeprefix(f"{args.config}: ")
        raise UserInputError(why if why.startswith("--set") else f"--set: {why}") from err


def run_generate(args: argparse.Namespace) -> int:
    """`generate`: write --seconds of the model's continuation of --prime (or of an unprimed
    context) to the WAV file --out."""
    import torch

    from samplegan_tune.audio.sound import write_wav
    from samplegan_tune.core.fileio import check_output_file
    from samplegan_tune.models.artifact import load_any_model
    from samplegan_tune.train.rollout import rollout, unprimed_context

    _require_within("seconds", args.seconds, 0.0, MAX_GENERATE_SECONDS, low_open=True)
    if args.offset is not None:
        _require_within("offset", args.offset, 0.0, math.inf)
    if args.level_dbfs is not None:
        _require_within("level-dbfs", args.level_dbfs, -80.0, 0.0)
    if args.offset is not None and args.prime is None:
        raise UserInputError("--offset needs --prime (the file the offset is in)")
    if args.out.suffix.lower() != ".wav":
        raise UserInputError(f"--out {args.out}: generate writes WAV; name the file *.wav")
    out = check_output_file(args.out, args.force)
    model = load_any_model(args.model, _device(args.device))
    cfg = model.cfg
    level = -20.0 if math.isnan(cfg.normalise_dbfs) else cfg.normalise_dbfs
    if args.prime:
        primer = _primer(args.prime, args.offset, cfg.context, cfg.sample_rate)
        context, gain_db = _model_level(primer, cfg.normalise_dbfs, args.level_dbfs)
    else:
        context = unprimed_context(1, cfg.context, level, args.seed)[0]
        gain_db = 0.0 if args.level_dbfs is None else args.level_dbfs - level
    audio = rollout(model, context[None], round(args.seconds * cfg.sample_rate), args.seed)[0]
    audio = audio.cpu() * 10 ** (gain_db / 20)
    if args.prime and args.include_prime:
        audio = torch.cat([primer, audio])
    write_wav(out, audio, cfg.sample_rate)
    print(f"wrote {out} ({audio.shape[0] / cfg.sample_rate:.2f} s at {cfg.sample_rate} Hz)")
    return 0


def _primer(path: str, offset: float | None, context: int, rate: int) -> torch.Tensor:
    """(T,) up to PRIMER_SECONDS of `path` before `offset` seconds (None: the file's end); at
    least the model's `context` samples."""
    from samplegan_tune.audio.sound import load_audio

    audio = load_audio(path, rate)
    end = audio.shape[0] if offset is None else round(offset * rate)
    earliest, duration = context / rate, audio.shape[0] / rate
    if not context <= end <= audio.shape[0]:
        where = f"--offset {offset:g}" if offset is not None else f"{path} ({duration:.2f} s)"
        raise UserInputError(
            f"{where}: the model reads {earliest:.3f} s of primer before the offset; allowed "
            f"offsets in {path}: {earliest:.3f} ... {duration:.2f} s"
        )
    return audio[max(0, end - round(PRIMER_SECONDS * rate)) : end]


def _model_level(
    primer: torch.Tensor, normalise_dbfs: float, level_dbfs: float | None
) -> tuple[torch.Tensor, float]:
    """(the primer at the model's level, the gain in dB that takes the model's output back).

    The model hears the primer normalised as in training; its output is scaled back by the
    same gain, so the continuation follows the primer's level, or, with `level_dbfs`, plays
    as if the primer had been at that level.
    """
    from samplegan_tune.audio.sound import normalise_loudness, rms_dbfs

    context = primer if math.isnan(normalise_dbfs) else normalise_loudness(primer, normalise_dbfs)
    primer_db, context_db = float(rms_dbfs(primer)), float(rms_dbfs(context))
    target = primer_db if level_dbfs is None else level_dbfs
    return context, target - context_db


def _device(name: str) -> torch.device:
    import torch

    from samplegan_tune.train.run import pick_device

    device = pick_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda: no CUDA device is available; use --device cpu")
    return device


def _require_within(
    name: str, value: float, low: float, high: float, low_open: bool = False
) -> None:
    """Refuse a non-finite `value` or one outside [low, high] ((low, high] if `low_open`)."""
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        bounds = f"{'>' if low_open else '>='} {low:g} and <= {high:g}"
        raise UserInputError(f"--{name} {value:g}: must be a finite number {bounds}")


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise UserInputError(f"--{name.replace('_', '-')} {value}: must be > 0")
