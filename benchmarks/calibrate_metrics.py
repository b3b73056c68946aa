"""Calibration table: every quality metric and collapse detector on known cases.

    python benchmarks/calibrate_metrics.py [--out FILE.md] [--smoke-test]
    python benchmarks/calibrate_metrics.py --data FOLDER_OR_FILE ... [--clip-seconds 8]

The reference is one half of the audio (the built-in synthetic corpus by song, or with --data
every other file of each PATH, e.g. one folder per genre); each case is a set of clips scored
against it. Primers are points in the other half; the cases are what a model could answer to
them: the real continuation, loops of the last 500, 512 and 4096 samples and of the last
second, white noise at the primer's level, a decaying transient, and the real continuation
given identically for every noise seed; plus real audio at other points (one row per song or
PATH) and further constructed failures (pink noise, near-silence, a tone, DC, one clip
repeated, a transient frozen into a constant). Cases that are a function of the primer alone
(loops, the transient, ...) are "rolled out" again with the same result, noise with another
draw; real audio has one continuation per primer, so it has no noise spread.
A short training section shows the training-signal detectors on the tiny model.
Writes the markdown to --out (default docs/metrics_calibration.md for the synthetic corpus,
nothing for --data or --smoke-test) and prints it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from samplegan_tune import metrics as m
from samplegan_tune.audio import find_audio_files, load_many
from samplegan_tune.collapse import CollapseMonitor, rollout_reasons
from samplegan_tune.config import TrainConfig
from samplegan_tune.data import Corpus
from samplegan_tune.synthetic import synthetic_songs
from samplegan_tune.trainer import Trainer

SAMPLE_RATE = 16000
DEFAULT_OUT = Path("docs") / "metrics_calibration.md"
MAX_REFERENCE_CLIPS = 96
SEEDED_PRIMERS = 4  # primers "rolled out" with a second seed, as `trial.score_model` does
TINY = dict(  # tests/conftest.py's tiny model: seconds per run on a CPU
    segment=64, context=256, crossfade=16, latent=16, ae_channels=4, ae_depth=2, noise_dim=4,
    g_channels=16, g_depth=2, d_channels=4, d_depth=2, batch_size=4, rollout_steps=2,
    d_warmup_steps=2,
)  # fmt: skip
SHORT = {  # column headers
    m.FAD_INF: "FAD∞", m.KID: "KID", m.NDB_K: "NDB/K", m.FLATNESS: "flatness",
    m.LOUDNESS_GAP: "gap dB", m.STFT_DISTANCE: "STFT", m.DIVERSITY: "diversity",
    m.REPETITION: "repetition", m.CHANGE: "change", m.NOISE_SPREAD: "noise spread",
    m.SCORE: "score ↓",
}  # fmt: skip
Songs = list[tuple[str, torch.Tensor]]
Case = tuple[torch.Tensor, torch.Tensor | None]  # clips (B, T), the same primers reseeded


def clips_of(songs: Songs, size: int) -> torch.Tensor:
    """Cut each song into non-overlapping clips of `size` samples: (N, size)."""
    return torch.cat([a[: a.numel() // size * size].reshape(-1, size) for _, a in songs])


def evenly(x: torch.Tensor, count: int) -> torch.Tensor:
    """`count` rows of (N, ...) spread evenly over it (all when N ≤ count)."""
    return x if len(x) <= count else x[torch.linspace(0, len(x) - 1, count).round().long()]


def at_dbfs(x: torch.Tensor, dbfs: float | torch.Tensor) -> torch.Tensor:
    """Scale each row of (B, T) to an RMS of `dbfs` (a number or (B, 1))."""
    return x / x.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12) * 10 ** (dbfs / 20)


def primed(songs: Songs, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` primer points spread over `songs` (every `size` + 1 s from 5 s on): the 1 s
    before each (B, sr) and the `size` samples after it (B, size), the real continuation."""
    before, after = [], []
    for _, audio in songs:
        # From 5 s on: a track's first second is often silence, no primer for music.
        for start in range(5 * SAMPLE_RATE, audio.numel() - size + 1, size + SAMPLE_RATE):
            before.append(audio[start - SAMPLE_RATE : start])
            after.append(audio[start : start + size])
    return evenly(torch.stack(before), count), evenly(torch.stack(after), count)


def loop(primer: torch.Tensor, period: int, size: int) -> torch.Tensor:
    """The last `period` samples of each primer (B, ≥ period), repeated to (B, size)."""
    return primer[:, -period:].repeat(1, size // period + 1)[:, :size]


def answers(songs: Songs, count: int, size: int) -> dict[str, Case]:
    """Name -> what a model could answer to `count` primers of `songs`."""
    primer, real = primed(songs, count, size)
    rng = torch.Generator().manual_seed(1)
    level = 10 * torch.log10(primer.pow(2).mean(1, keepdim=True).clamp_min(1e-12))  # (B, 1)
    white = [at_dbfs(torch.randn(len(real), size, generator=rng), level) for _ in range(2)]
    decay = real * torch.exp(-torch.arange(size) / (0.2 * SAMPLE_RATE))
    out: dict[str, Case] = {"real continuation of the primers": (real, None)}
    for period in (500, 512, 4096, SAMPLE_RATE):
        clips = loop(primer, period, size)
        name = "1 s" if period == SAMPLE_RATE else f"{period} samples"
        out[f"loop of the primer's last {name}"] = (clips, clips)
    out["white noise at the primer's level"] = (white[0], white[1])
    out["decaying transient (real, × e^(−t / 0.2 s))"] = (decay, decay)
    out["real continuation, the same for every seed"] = (real, real)
    return out


def others(songs: Songs, reference_clips: torch.Tensor, count: int, size: int) -> dict[str, Case]:
    """Name -> real audio at other points (all, then each song) and constructed failures."""
    rng = torch.Generator().manual_seed(0)
    pick = evenly(clips_of(songs, size), count)
    out: dict[str, Case] = {"real vs real (other half)": (pick, None)}
    for name, audio in songs:
        if audio.numel() >= size:
            out[f"real: {name}"] = (evenly(clips_of([(name, audio)], size), count), None)
    white = torch.randn(2, count, size, generator=rng)
    spectrum = torch.fft.rfft(torch.randn(count, size, generator=rng))
    pink = torch.fft.irfft(spectrum / torch.arange(spectrum.shape[1]).clamp_min(1).sqrt(), size)
    tone = at_dbfs(torch.sin(2 * math.pi * 440.0 * torch.arange(size) / SAMPLE_RATE)[None], -20)
    frozen, onset = pick.clone(), int(0.2 * SAMPLE_RATE)
    frozen[:, onset:] = frozen[:, onset - 1 : onset]  # the last value held: a stuck waveform
    level = float(10 * torch.log10(reference_clips.pow(2).mean()))
    out.update({
        "pink noise": (at_dbfs(pink, level), at_dbfs(pink.roll(1, 0), level)),
        "near-silence (noise at −80 dBFS)": (at_dbfs(white[0], -80.0), at_dbfs(white[1], -80.0)),
        "pure tone (440 Hz)": (tone.repeat(count, 1), tone.repeat(count, 1)),
        "DC-stuck (constant 0.1)": (torch.full((count, size), 0.1),) * 2,
        "one real clip repeated": (pick[:1].repeat(count, 1),) * 2,
        "transient (0.2 s) then stagnant": (frozen, frozen),
    })  # fmt: skip
    return out


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e5 else f"{value:.2e}"


def quality_table(
    reference: m.RealReference, sets: dict[str, Case]
) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Markdown rows and, per case, its score and its score without the noise-spread term
    (what `samplegan-tune evaluate` sees), each ÷ the first case's."""
    head = ["case", *SHORT.values(), "no seeds", "× real", "detectors (first = reason)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scores: dict[str, tuple[float, float]] = {}
    for name, (clips, reseeded) in sets.items():
        again = None if reseeded is None else reseeded[:SEEDED_PRIMERS]
        values, _ = m.evaluate_clips(clips, reference, again)
        unseeded = m.quality_score({**values, m.NOISE_SPREAD: None}, reference, {})
        scores[name] = (values[m.SCORE], unseeded)
        base = next(iter(scores.values()))[1]
        fired = rollout_reasons(clips, reference, noise_spread=values[m.NOISE_SPREAD])
        cells = [name, *(fmt(values[k]) for k in SHORT), fmt(unseeded),
                 f"{values[m.SCORE] / base:.1f}×", ", ".join(fired) or "none"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    base = next(iter(scores.values()))[1]
    return rows, {name: (s / base, u / base) for name, (s, u) in scores.items()}


def summary(ratios: dict[str, tuple[float, float]]) -> str:
    """Two sentences: how much worse the mildest failure is than the worst real case."""
    real = {k: v[0] for k, v in ratios.items() if k.startswith("real") and "same" not in k}
    lines = []
    for i, what in ((0, "with"), (1, "without")):
        failures = {k: v[i] for k, v in ratios.items()
                    if k not in real and (i == 0 or "same" not in k)}  # fmt: skip
        mildest = min(failures, key=failures.__getitem__)
        verdict = "worse" if failures[mildest] > max(real.values()) else "NOT always worse"
        lines.append(
            f"Scored {what} the noise-spread term, every failure case scores {verdict} than "
            f"every real case: the mildest, {mildest}, is {failures[mildest]:.1f}× real vs "
            f"real's score (the worst real case {max(real.values()):.1f}×)."
        )
    return " ".join(lines)


def training_rows(corpus: Corpus, steps: int) -> list[str]:
    """Markdown rows: the training-signal detectors on the tiny model at three learning rates."""
    rows = [
        "| run | steps | max finite grad norm | max d/separation | reason (at step) |",
        "|---|---|---|---|---|",
    ]
    for lr in (2e-4, 10.0, 1000.0):
        cfg = TrainConfig.from_dict({**TINY, "lr_g": lr, "lr_d": lr, "lr_ae": lr})
        trainer, monitor = Trainer(cfg, corpus), CollapseMonitor()
        reason, grads, separation = None, [], []
        while trainer.step_count < steps and reason is None:
            metrics = trainer.step()
            reason = monitor.check_training(metrics, trainer.model)
            grads += [v for k, v in metrics.items() if k.startswith("grad/") and math.isfinite(v)]
            separation += [metrics["d/separation"]] if "d/separation" in metrics else []
        where = f"{reason} (step {trainer.step_count})" if reason else "none"
        peaks = [fmt(max(v)) if v else "n/a" for v in (grads, separation)]
        rows.append(f"| lr {lr:g} (G, D, AE) | {trainer.step_count} | {peaks[0]} | {peaks[1]} "
                    f"| {where} |")  # fmt: skip
    return rows


def split(songs: Songs) -> tuple[Songs, Songs]:
    """The synthetic corpus: first half of the songs as reference, the rest held out."""
    half = len(songs) // 2
    return songs[:half], songs[half:]


def load_groups(paths: list[str]) -> tuple[Songs, Songs]:
    """Each PATH's files alternately into reference and held-out (so both see every PATH);
    held-out songs are named by their PATH (a genre, say)."""
    reference, held_out = [], []
    for path in paths:
        items = load_many(find_audio_files([path]), SAMPLE_RATE)
        reference += items[::2]
        label = Path(path).name
        held_out.append((label, torch.cat([audio for _, audio in items[1::2]])))
    return reference, held_out


def build(smoke: bool, data: list[str] | None, clip_seconds: float) -> str:
    """The whole markdown document."""
    started = time.perf_counter()
    size, count = round(clip_seconds * SAMPLE_RATE), 8 if smoke else 16
    if data:
        reference_songs, held_out = load_groups(data)
        source = f"{len(reference_songs)} files of {', '.join(data)} (every other file of each)"
    else:
        seconds = 60.0 if smoke else 240.0
        reference_songs, held_out = split(synthetic_songs(seconds, SAMPLE_RATE, seed=2024))
        source = (f"the first {len(reference_songs)} songs of the built-in synthetic corpus "
                  f"(`synthetic_songs({seconds:g}, {SAMPLE_RATE}, seed=2024)`)")  # fmt: skip
    reference_clips = evenly(clips_of(reference_songs, size), MAX_REFERENCE_CLIPS)
    reference = m.RealReference.from_clips(reference_clips, SAMPLE_RATE)
    sets = {**answers(held_out, count, size), **others(held_out, reference_clips, count, size)}
    first = {"real vs real (other half)": sets.pop("real vs real (other half)")}
    table, ratios = quality_table(reference, {**first, **sets})
    intro = [
        "# Quality metrics and collapse detectors: calibration",
        "",
        f"Generated by `python benchmarks/calibrate_metrics.py{' --data …' if data else ''}` "
        f"({time.perf_counter() - started:.0f} s on 2 CPU cores); do not edit by hand.",
        "",
        f"Reference: {source}, cut into {reference.num_clips} clips of {clip_seconds:g} s. "
        f"Each case is {count} clips of {clip_seconds:g} s scored against it with the default "
        "log-mel features; primers and real cases come from the held-out audio (never seen "
        f"by the reference). Real flatness {reference.flatness:.3g}, real level "
        f"{reference.loudness_dbfs:.1f} dBFS.",
        "",
        "`score ↓` is `quality/score` (lower = better; formula in `samplegan_tune/metrics.py`); "
        "`no seeds` is the score without the noise-spread term, as `samplegan-tune evaluate` "
        "computes it; `× real` is `score ↓` ÷ real vs real's. Deterministic cases (loops, "
        "tone, the transient, …) were 'rolled out' a second time with the same result for "
        f"{SEEDED_PRIMERS} primers, noise with another draw; real audio has one continuation "
        "per primer, so its noise spread is n/a (without seeds, the seed case is real audio). "
        "`detectors` lists every rollout detector that fires, in "
        "checking order; the first is the reason a trial would be stopped with. No detector "
        "may fire on a real case.",
        "",
        summary(ratios),
        "",
    ]
    if data:
        return "\n".join(intro + table) + "\n"
    training = training_rows(Corpus.from_items(reference_songs, SAMPLE_RATE), 10 if smoke else 40)
    outro = [
        "",
        "## Training signals",
        "",
        "The tiny test model trained on the reference songs, checked after every step by "
        "`CollapseMonitor.check_training` (with the weights scanned). Gradient norms are "
        "before clipping; `d/separation` is the share of (real, fake) segment pairs D ranks "
        "right (0.5 balanced, 1 saturated). At lr 10 this trainer does not produce NaN: the "
        "losses and the discriminator's gradients explode instead, which "
        "`exploding_gradients` reports.",
        "",
    ]
    return "\n".join(intro + table + outro + training) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"markdown file (default {DEFAULT_OUT})")
    parser.add_argument("--smoke-test", action="store_true", help="small and fast; no file")
    parser.add_argument("--data", nargs="+", metavar="PATH", help="real recorded music")
    parser.add_argument("--clip-seconds", type=float, help="default 4, or 8 with --data")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small tensors: more threads only contend with other work
    seconds = args.clip_seconds or (8.0 if args.data else 4.0)
    text = build(args.smoke_test, args.data, seconds)
    out = args.out or (None if args.smoke_test or args.data else DEFAULT_OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
