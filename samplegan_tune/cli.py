"""`samplegan-tune` command line: every input is checked before any work starts."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from samplegan_tune import search_cli
from samplegan_tune.errors import UserInputError
from samplegan_tune.evaluate_cmd import add_evaluate_arguments, evaluate_from_args
from samplegan_tune.search_cli import add_search_commands

if TYPE_CHECKING:  # torch is imported lazily so that --help and input errors answer at once
    import torch

DEFAULT_TRAIN_OUT = Path("results") / "train"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplegan-tune",
        description="Autoencoder-seeded raw-audio GAN: train, search, rank, export, generate.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands.add_parser("train", help="train one model (no Ray)"))
    _add_generate(commands.add_parser("generate", help="make a WAV from a trained model"))
    add_search_commands(commands)
    add_evaluate_arguments(commands.add_parser("evaluate", help="quality metrics of audio"))
    return parser


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        nargs="+",
        default=["synthetic"],
        help="audio files/folders, or 'synthetic' (built-in corpus, the default)",
    )
    p.add_argument("--config", help="YAML file of config keys (see samplegan_tune/config.py)")
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
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--cache-dir", help="prepared-corpus cache (default ~/.cache/samplegan-tune)")


def _add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an exported folder, a train run folder or a checkpoint .pt")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", type=Path, required=True, help="the WAV file to write")
    p.add_argument("--prime", help="audio file whose end seeds the context (else quiet noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--include-prime", action="store_true", help="put the primer before it")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])


def main(argv: Sequence[str] | None = None) -> int:
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
    from samplegan_tune.checkpoint import LAST, load_checkpoint
    from samplegan_tune.config import TrainConfig, load_config
    from samplegan_tune.fileio import check_output_dir
    from samplegan_tune.trainer import Trainer
    from samplegan_tune.training_run import Intervals, prepare_data, train

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
    state = load_checkpoint(out / LAST) if args.resume else None
    cfg = TrainConfig.from_dict(state["config"]) if state else load_config(args.config, args.set)
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


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from samplegan_tune.audio import load_audio, normalise_loudness, write_wav
    from samplegan_tune.artifact import load_any_model
    from samplegan_tune.fileio import check_output_file
    from samplegan_tune.rollout import rollout, unprimed_context

    _require_positive(seconds=args.seconds)
    out = check_output_file(args.out, args.force)
    model = load_any_model(args.model, _device(args.device))
    cfg = model.cfg
    level = -20.0 if math.isnan(cfg.normalise_dbfs) else cfg.normalise_dbfs
    if args.prime:
        prime = load_audio(args.prime, cfg.sample_rate)
        if not math.isnan(cfg.normalise_dbfs):
            prime = normalise_loudness(prime, cfg.normalise_dbfs)
        context = prime[None]
    else:
        context = unprimed_context(1, cfg.context, level, args.seed)
    audio = rollout(model, context, round(args.seconds * cfg.sample_rate), args.seed)[0].cpu()
    if args.prime and args.include_prime:
        audio = torch.cat([prime, audio])
    write_wav(out, audio, cfg.sample_rate)
    print(f"wrote {out} ({audio.shape[0] / cfg.sample_rate:.2f} s at {cfg.sample_rate} Hz)")
    return 0


def _device(name: str) -> torch.device:
    import torch

    from samplegan_tune.training_run import pick_device

    device = pick_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda: no CUDA device is available; use --device cpu")
    return device


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise UserInputError(f"--{name.replace('_', '-')} {value}: must be > 0")


if __name__ == "__main__":
    sys.exit(main())
