"""A whole training run on disk: data in, progress out, events and checkpoints in a folder."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import yaml

from samplegan_tune.audio.corpus import Corpus, prepare_corpus, split_corpus
from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.core.config import TrainConfig
from samplegan_tune.core.fileio import atomic_path, writing
from samplegan_tune.judge.collapse import CollapseMonitor
from samplegan_tune.models.checkpoint import LAST, save_checkpoint
from samplegan_tune.train.eventlog import EventLog
from samplegan_tune.train.rollout import rollout
from samplegan_tune.train.trainer import Trainer

# What a progress line shows, in this order, when the step reported it.
_SHOWN = ("loss/g_total", "loss/d", "loss/recon_l1", "loss/loudness", "d/acc_real", "d/acc_fake")


@dataclass(frozen=True)
class Intervals:
    """Steps between the progress lines, the evaluations and the checkpoints of a `train` run."""

    log: int = 25  # steps between progress lines and scalar events
    eval: int = 250  # steps between evaluations (metrics + a listened rollout)
    checkpoint: int = 250  # steps between checkpoints


def prepare_data(
    data: list[str], cfg: TrainConfig, cache_dir: str | Path | None = None
) -> tuple[Corpus, Corpus]:
    """Decode (or load from cache) the corpus and split off the held-out part."""
    level = None if math.isnan(cfg.normalise_dbfs) else cfg.normalise_dbfs
    source: str | list[str] = "synthetic" if data == ["synthetic"] else data
    corpus = prepare_corpus(source, cfg.sample_rate, level, cache_dir, min_samples=cfg.window)
    return split_corpus(corpus, cfg.holdout_fraction, min_samples=cfg.window)


def pick_device(name: str) -> torch.device:
    """ "auto" -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(
    trainer: Trainer,
    out: Path,
    total_steps: int,
    every: Intervals = Intervals(),  # noqa: B008 - frozen dataclass, safe as a default
    stream: TextIO = sys.stdout,
) -> str | None:
    """Train until `total_steps`, logging to out/tb and checkpointing to out/checkpoints.

    Returns None, or the collapse reason that stopped training early.

    An interrupt (Ctrl-C) still writes the checkpoint, so no finished step is lost. A run
    whose training collapses (NaN, exploding gradients, D winning for good) stops with the
    reason printed, keeping the last checkpoint written before it (if any).
    """
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(trainer.cfg.to_dict(), sort_keys=False))
    events = EventLog(out / "tb", trainer.cfg.sample_rate)
    meter = _Meter(trainer.step_count, total_steps, trainer.cfg.batch_size)
    monitor = CollapseMonitor()
    try:
        while trainer.step_count < total_steps:
            metrics = trainer.step()
            step = trainer.step_count
            reason = monitor.check_training(metrics)
            if reason:
                print(f"stopped at step {step}: training collapsed ({reason})", file=stream)
                return reason
            if step % every.log == 0 or step == total_steps:
                events.scalars(metrics, step)
                print(meter.line(step, metrics), file=stream, flush=True)
            if step % every.eval == 0 or step == total_steps:
                evaluate_and_listen(trainer, events)
            if step % every.checkpoint == 0:
                save_checkpoint(out / LAST, trainer.state_dict())
    except KeyboardInterrupt:
        save_checkpoint(out / LAST, trainer.state_dict())
        raise
    finally:
        events.close()
    save_checkpoint(out / LAST, trainer.state_dict())
    return None


def evaluate_and_listen(trainer: Trainer, events: EventLog, seconds: float = 2.0) -> dict:
    """Held-out metrics plus one primed rollout, logged as audio, spectrogram and level drift."""
    metrics = trainer.evaluate()
    primer = trainer.eval_sampler.fixed_windows(1, trainer.cfg.context, seed=7)
    clip = rollout(trainer.model, primer, int(seconds * trainer.cfg.sample_rate), seed=0)[0]
    trainer.model.train()
    metrics["eval/rollout_drift_db"] = float(
        rms_dbfs(clip[-trainer.cfg.sample_rate // 2 :]) - rms_dbfs(primer[0])
    )
    events.scalars(metrics, trainer.step_count)
    events.audio("rollout/primed", torch.cat([primer[0], clip]), trainer.step_count)
    return metrics


class _Meter:
    """Steps per second and a one-line summary of the latest metrics."""

    def __init__(self, start_step: int, total: int, batch_size: int) -> None:
        self.start_step, self.total, self.batch = start_step, total, batch_size
        self.started = time.perf_counter()

    def line(self, step: int, metrics: dict[str, float]) -> str:
        elapsed = time.perf_counter() - self.started
        rate = (step - self.start_step) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        shown = " ".join(f"{k.split('/')[-1]}={metrics[k]:.3g}" for k in _SHOWN if k in metrics)
        return (
            f"step {step}/{self.total} | {rate:.2f} steps/s {rate * self.batch:.0f} seg/s"
            f" | eta {eta / 60:.1f} min | {shown}"
        )
