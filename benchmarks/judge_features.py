"""What each candidate judge feature says about graded degradations of real continuations.

    python benchmarks/judge_features.py --genre metal DIR_OR_FILES... --genre orchestral ... \
        [--points 16] [--primer 3] [--seconds 8] [--hop 1.0]

Per genre (as the FAD paper calibrates, Kilgour et al. 2019): every other file makes the
real reference (8-s clips); in the other files, `--points` primers of `--primer` s and the
true `--seconds` that follow them; `degrade.graded_cases` turns the truth into graded
degradations and the seed's failures. Each case is scored by today's `quality/score` (and its
detectors), by the musicnn metrics (`musicmetrics`: Fréchet distance of 3-s patches, tag KL)
and by continuity with its own primer (`continuity`: key, tempo, timbre, level). Prints one
table per genre (each value ÷ the truth's, where the truth's is not 0), then, per feature,
the Spearman correlation with strength within each degradation family: +1 = the feature
grows as the degradation gets stronger, as a judge's distance should.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from samplegan_tune.audio import find_audio_files, load_audio
from samplegan_tune.collapse import rollout_reasons
from samplegan_tune.continuity import continuity
from samplegan_tune.degrade import Case, graded_cases
from samplegan_tune.metrics import SCORE, RealReference, evaluate_clips
from samplegan_tune.musicmetrics import MUSIC_FD, TAG_KL, MusicReference, music_metrics
from samplegan_tune.musicnn import MusicEmbedding

RATE = 16000
FEATURES = ("score", "music_fd", "tag_kl", "key", "tempo", "timbre", "level")


def songs_of(paths: list[str]) -> list[torch.Tensor]:
    """Every audio file under `paths`, decoded at 16 kHz, in name order."""
    return [load_audio(p, RATE) for p in find_audio_files([Path(p) for p in paths])]


def reference_clips(songs: list[torch.Tensor], seconds: float, most: int) -> torch.Tensor:
    """Up to `most` non-overlapping clips (N, T) of `seconds`, spread over `songs`."""
    size = round(seconds * RATE)
    clips = [s[i : i + size] for s in songs for i in range(0, len(s) - size + 1, size)]
    step = max(1, len(clips) // most)
    return torch.stack(clips[::step][:most])


def primed(songs: list[torch.Tensor], count: int, primer: float, seconds: float):
    """(primers (B, P), truths (B, T)) at `count` points spread over `songs`, from 5 s in."""
    p, t = round(primer * RATE), round(seconds * RATE)
    spans = [(s, i) for s in songs for i in range(5 * RATE + p, len(s) - t - RATE, RATE)]
    chosen = [spans[round(k * (len(spans) - 1) / max(1, count - 1))] for k in range(count)]
    return (
        torch.stack([s[i - p : i] for s, i in chosen]),
        torch.stack([s[i : i + t] for s, i in chosen]),
    )


def features(case: Case, primers, reference: RealReference, net, music_ref) -> dict:
    """Every candidate feature of one case's clips (B, T), each a float (mean over clips)."""
    values, _ = evaluate_clips(case.clips, reference)
    music, _ = music_metrics(net, case.clips, music_ref, RATE)
    near = continuity(primers, case.clips, RATE)
    out = {"score": values[SCORE], "music_fd": music[MUSIC_FD], "tag_kl": music[TAG_KL]}
    out.update({name: float(d.mean()) for name, d in near.items()})
    out["detectors"] = ", ".join(rollout_reasons(case.clips, reference)) or "none"
    return out


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation of two equally long lists (ties get their mean rank)."""

    def ranks(v: list[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        order = t.argsort().argsort().double()
        for value in t.unique():  # mean rank for ties
            tied = t == value
            order[tied] = order[tied].mean()
        return order

    a, b = ranks(x), ranks(y)
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else math.nan


def table(genre: str, rows: dict[str, dict], cases: list[Case]) -> str:
    truth = rows["truth"]
    lines = [
        f"### {genre}",
        "",
        "| case | " + " | ".join(FEATURES) + " | detectors |",
        "|---|" + "---|" * (len(FEATURES) + 1),
    ]
    for case in cases:
        row = rows[case.name]
        cells = []
        for f in FEATURES:
            value, base = row[f], truth[f]
            ratio = f" ({value / base:.2g}×)" if base and value is not None else ""
            cells.append("n/a" if value is None else f"{value:.3g}{ratio}")
        lines.append(f"| {case.name} | " + " | ".join(cells) + f" | {row['detectors']} |")
    return "\n".join(lines)


def correlations(per_genre: dict[str, tuple[dict, list[Case]]]) -> str:
    """Per family (≥ 3 strengths, truth as strength -inf), per genre: Spearman per feature."""
    lines = [
        "| genre | family | " + " | ".join(FEATURES) + " |",
        "|---|---|" + "---|" * len(FEATURES),
    ]
    for genre, (rows, cases) in per_genre.items():
        families = sorted({c.family for c in cases} - {"truth"})
        for family in families:
            members = [c for c in cases if c.family == family]
            if len(members) < 2:
                continue
            strengths = [-1e9] + [c.strength for c in members]
            names = ["truth"] + [c.name for c in members]
            cells = []
            for f in FEATURES:
                ys = [rows[n][f] for n in names]
                ok = None not in ys
                cells.append(f"{spearman(strengths, ys):+.2f}" if ok else "n/a")
            lines.append(f"| {genre} | {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genre",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "PATH"),
        help="a genre's name and its audio",
    )
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--primer", type=float, default=3.0, help="primer seconds")
    parser.add_argument("--seconds", type=float, default=8.0, help="continuation seconds")
    parser.add_argument("--hop", type=float, default=1.0, help="musicnn patch hop, seconds")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    net = MusicEmbedding.load()
    per_genre = {}
    for name, *paths in args.genre:
        started = time.perf_counter()
        songs = songs_of(paths)
        real = reference_clips(songs[0::2], args.seconds, 48)
        reference = RealReference.from_clips(real, RATE)
        music_ref = MusicReference.from_clips(net, real, args.hop)
        primers, truths = primed(songs[1::2], args.points, args.primer, args.seconds)
        cases = graded_cases(truths, primers, RATE, seed=0)
        rows = {c.name: features(c, primers, reference, net, music_ref) for c in cases}
        per_genre[name] = (rows, cases)
        print(table(name, rows, cases))
        print(
            f"\n{len(songs)} files, {len(real)} reference clips, {args.points} primers, "
            f"{time.perf_counter() - started:.0f} s\n"
        )
    print("### Spearman correlation with strength, within each family (+1: grows with it)\n")
    print(correlations(per_genre))


if __name__ == "__main__":
    main()
