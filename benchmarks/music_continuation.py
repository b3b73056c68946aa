"""The product's proof: does the best model of a time-budgeted search continue music it never
trained on, better than an untuned default run of the same wall time and than the failures?

    python benchmarks/music_continuation.py --train DIR_OR_FILES... --unseen FILE... \
        [--budget 1800] [--space narrow] [--points 4] [--seconds 8] [--out DIR] \
        [--model NAME PATH ...] [--no-train] [--sides search,default]
    python benchmarks/music_continuation.py --smoke [--sides ...] [--out DIR]

1. `samplegan-tune search --space SPACE --data TRAIN --time-budget BUDGET`, then `export` of
   rank 1 (the user's commands, in subprocesses);
2. `samplegan-tune train --data TRAIN` with the default config, stopped with Ctrl-C after the
   same BUDGET seconds (it keeps its checkpoint);
3. for each unseen file, `--points` evenly spaced points; each model continues the audio
   before each point for `--seconds` with `samplegan-tune generate --offset` (seeds 0 and 1),
   beside four references on the same primers: the true continuation, the primer's last
   second repeated, its last 500 samples looped, white noise at its level;
4. every quality metric (against 8 s clips of the unseen files, each with the 3 s before it
   for the drift metrics; each continuation's drift is measured from the 3 s before its
   point), the detectors, the
   per-second loudness relative to the primer, and a spectrogram PNG of each set's first
   continuation in OUT. Prints one markdown table.

`--smoke`: three synthetic songs written to a temporary folder (two to train on, one unseen),
the search at smoke size (`search --smoke`, 2 trials) with no time budget (its trials' own 2
reports end it: on a loaded machine a budget of seconds can end it before the first report),
the default run 12 s, 1 point of 4 s.
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _smoke import folder, write_songs

from samplegan_tune.audio.sound import load_audio, mel_db, rms_dbfs
from samplegan_tune.cli.evaluate import primed_clips
from samplegan_tune.judge.collapse import rollout_reasons
from samplegan_tune.judge.metrics import (
    CHANGE,
    DRIFTS,
    FAD_INF,
    MUSIC_FD,
    NOISE_SPREAD,
    REPETITION,
    SCORE,
    TAG_KL,
    RealReference,
    evaluate_clips,
)
from samplegan_tune.judge.scale import reference_sets
from samplegan_tune.report.figures import colour_range, save_png

RATE, PRIMER_S, LOOP = 16000, 3.0, 500
SHOWN = (
    SCORE,
    MUSIC_FD,
    TAG_KL,
    DRIFTS["key"],
    DRIFTS["tempo"],
    FAD_INF,
    REPETITION,
    CHANGE,
    NOISE_SPREAD,
)
CLI = [sys.executable, "-m", "samplegan_tune.cli"]


def run(*args: str, timeout: float | None = None) -> str:
    """Run a `samplegan-tune` command in a subprocess and return its stdout; exit with the tails of
    its output when it fails."""
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(args[:2])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.stdout


def searched_model(train: list[str], space: str, budget: float, out: Path, *more: str) -> Path:
    """Run a `budget`-second search (0: no limit) over `space` on `train` in `out` (`more`: further
    `search` options), print its leaderboard, and export rank 1; returns the exported folder,
    out/best."""
    said = run(
        "search",
        "--space",
        space,
        "--data",
        *train,
        "--time-budget",
        str(budget),
        "--storage",
        str(out),
        "--name",
        "search",
        *more,
    )
    # The search's own end: its leaderboard (rank 1, the final fit, the budget split).
    print(said[said.find("# Leaderboard") :], flush=True)
    run("export", str(out / "search"), "--rank", "1", "--out", str(out / "best"))
    return out / "best"


def default_model(train: list[str], budget: float, out: Path) -> Path:
    """A default `train` run, interrupted after `budget` seconds (Ctrl-C keeps the checkpoint)."""
    args = [*CLI, "train", "--data", *train, "--steps", "100000000", "--out", str(out / "default")]
    # SIGINT back to default in the child: a benchmark started in the background (`cmd &`)
    # inherits SIGINT ignored, and `train` would then never see the Ctrl-C below.
    driver = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(budget)
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=300)
    return out / "default"


def points(path: str, count: int, seconds: float) -> list[float]:
    """Primer ends evenly spaced where a primer and a whole continuation fit."""
    duration = load_audio(path, RATE).shape[0] / RATE
    first, last = PRIMER_S + 1.0, duration - seconds - 1.0
    return [first + (last - first) * (i + 0.5) / count for i in range(count)]


def generated(
    model: Path,
    unseen: list[str],
    ends: dict[str, list[float]],
    seconds: float,
    seed: int,
    work: Path,
) -> torch.Tensor:
    """(P, T) the model's continuations of every primer, as `generate` writes them."""
    clips = []
    for path in unseen:
        for end in ends[path]:
            wav = work / f"{model.name}-{seed}-{len(clips)}.wav"
            run(
                "generate",
                str(model),
                "--prime",
                path,
                "--offset",
                f"{end:.3f}",
                "--seconds",
                str(seconds),
                "--seed",
                str(seed),
                "--out",
                str(wav),
                "--force",
            )
            clips.append(load_audio(wav, RATE))
    return torch.stack(clips)


def windows(unseen: list[str], ends: dict[str, list[float]], seconds: float) -> torch.Tensor:
    """(P, primer + T): each primer with its true continuation."""
    primer, length = round(PRIMER_S * RATE), round(seconds * RATE)
    rows = []
    for path in unseen:
        audio = load_audio(path, RATE)
        for end in ends[path]:
            stop = round(end * RATE)
            rows.append(audio[stop - primer : stop + length])
    return torch.stack(rows)


def row(
    name: str,
    clips: torch.Tensor,
    again: torch.Tensor | None,
    primers: torch.Tensor,
    reference: RealReference,
) -> str:
    """One table row of a set of clips: the shown metrics, the worst 1-s loudness gap to the
    primers, the mean dBFS of each second, and the detectors that fire."""
    values, _ = evaluate_clips(clips, reference, again, primers=primers)
    fired = rollout_reasons(clips, reference, noise_spread=values[NOISE_SPREAD])
    level = rms_dbfs(primers)[:, None]  # (P, 1)
    per_second = rms_dbfs(clips[:, : clips.shape[1] // RATE * RATE].reshape(len(clips), -1, RATE))
    gap = float((per_second - level).abs().max())
    seconds = " ".join(f"{v:.0f}" for v in per_second.mean(0).tolist())

    def show(key: str) -> str:
        value = values[key]
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"

    cells = [show(k) for k in SHOWN]
    return (
        f"| {name} | {' | '.join(cells)} | {gap:.1f} | {seconds} | {', '.join(fired) or 'none'} |"
    )


def main() -> None:
    """Train the sides asked for, continue every unseen primer with each model and reference, save a
    spectrogram PNG per set in --out, and print the table."""
    parser = _parser()
    args = parser.parse_args()
    if args.smoke:
        _smoke_inputs(args)
    elif not (args.train and args.unseen):
        parser.error("--train and --unseen are required (or --smoke)")
    args.out.mkdir(parents=True, exist_ok=True)
    models = {name: Path(path) for name, path in args.model}
    sides = set() if args.no_train else set(args.sides.split(","))
    if "search" in sides:
        name, model = _search_side(args)
        models[name] = model
    if "default" in sides:
        models[f"untuned default `train`, {args.budget:.0f} s"] = default_model(
            args.train, args.budget, args.out
        )
    ends = {path: points(path, args.points, args.seconds) for path in args.unseen}
    before, after = primed_clips(args.unseen, RATE, args.seconds, "--unseen")
    reference = RealReference.from_clips(after, RATE, primers=before)
    both = windows(args.unseen, ends, args.seconds)
    primer = round(PRIMER_S * RATE)
    sets = dict(reference_sets(both, primer, LOOP, RATE))
    for name, model in models.items():
        first = generated(model, args.unseen, ends, args.seconds, 0, args.out)
        sets[name] = (first, generated(model, args.unseen, ends, args.seconds, 1, args.out))
    spectra = {name: mel_db(clips[0], RATE) for name, (clips, _) in sets.items()}
    low, high = colour_range(list(spectra.values()))
    for i, (name, db) in enumerate(spectra.items()):
        save_png(db, args.out / f"set{i}.png", low, high, args.seconds)
        print(f"set{i}.png: {name}")
    print(f"{len(both)} primers of {len(args.unseen)} unseen track(s); spectrograms: {args.out}")
    print(
        "| set | score ↓ | music_fd | tag_kl | key drift | tempo drift | FAD∞ (log-mel) | "
        "repetition | change | noise spread | worst 1-s gap to primer (dB) | dBFS per second "
        "| detectors |\n|" + "---|" * 13
    )
    for name, (clips, again) in sets.items():
        print(row(name, clips, again, both[:, :primer], reference))
    print(real_range(reference))


def _search_side(args: argparse.Namespace) -> tuple[str, Path]:
    """The search side's name in the table, and its exported model."""
    if args.smoke:  # no time budget: see the module docstring
        more = ("--smoke", "--num-samples", "2")
        model = searched_model(args.train, args.space, 0.0, args.out, *more)
        return f"best of a `{args.space}` search at smoke size", model
    model = searched_model(args.train, args.space, args.budget, args.out)
    return f"best of a {args.budget:.0f} s `{args.space}` search", model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", nargs="+", help="music to train on")
    parser.add_argument("--unseen", nargs="+", help="tracks never trained on")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds, each side")
    parser.add_argument("--space", default="narrow")
    parser.add_argument("--points", type=int, default=4, help="primers per unseen track")
    parser.add_argument("--seconds", type=float, default=8.0, help="continuation length")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="continuation-")))
    parser.add_argument(
        "--model",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "PATH"),
        help="also continue with this trained model (run, checkpoint or export)",
    )
    parser.add_argument(
        "--sides",
        default="search,default",
        help="which trained sides to run: search, default or both (the default needs no Ray)",
    )
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="skip the search and the default run: only the --model entries",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="synthetic songs, a tiny search, a 12-s default run"
    )
    return parser


def _smoke_inputs(args: argparse.Namespace) -> None:
    """For --smoke: three synthetic songs in a temporary folder (two to train on, one unseen),
    a 12-s default run, 1 point of 4 s."""
    where = folder("music-continuation")
    songs = write_songs(where / "music", 3)
    args.train, args.unseen = songs[:2], songs[2:]
    args.budget, args.points, args.seconds = 12.0, 1, 4.0


def real_range(reference: RealReference) -> str:
    """The range of real music's liveliness: each 8-s clip of the unseen tracks on the table's
    scale (their mean = 1); a model's mean should lie inside it."""
    spans = []
    for name, per_clip in (("repetition", reference.repetition), ("change", reference.change)):
        relative = per_clip / per_clip.mean()
        spans.append(f"{name} {float(relative.min()):.2f} … {float(relative.max()):.2f}")
    clips = len(reference.repetition)
    return f"real music, {clips} clips of the unseen tracks: " + ", ".join(spans)


if __name__ == "__main__":
    main()
