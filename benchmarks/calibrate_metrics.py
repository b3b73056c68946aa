"""The judge's calibration on real music: every case's metrics and score, per genre; the rank
correlation of the score with each family's strength; and, with --fit, the score's weights.

    python benchmarks/calibrate_metrics.py --genre metal PATH... --genre orchestral PATH... \
        --genre ambient PATH... [--points 12] [--seed 0] [--fit] [--rows rows.pt] [--out FILE]
    python benchmarks/calibrate_metrics.py --smoke [--fit] [--out FILE]

Per genre (`samplegan_tune.judge.calibration`): every other file gives the reference (32 true
continuations of 3-s primers), the rest `--points` held-out primers and the 8 s that follow;
`degrade.graded_cases` makes the graded degradations and the seed's failures of those, each
scored against the reference with its primers. `--rows` keeps the measured rows (a second run
with the same file skips the measuring). `--fit` solves the linear programme of `judge`'s
docstring: non-negative weights summing to 1 that maximise the smallest margin over every
ordering of `calibration.orderings` in every genre, then checks each genre with weights fitted
on the others (leave one genre out). The tables use the fitted weights with --fit, else
`judge.WEIGHTS`. Writes --out (default docs/metrics_calibration.md) and prints it.
`--smoke`: one genre of five synthetic songs written to a temporary folder (three hold the
reference's 32 primer points), 1 primer, --out in that folder unless given.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from _smoke import folder, write_songs

from samplegan_tune.judge import calibration as cal
from samplegan_tune.judge import score as judge
from samplegan_tune.judge.metric_names import DRIFTS, MUSIC_FD, REPETITION, TAG_KL

DEFAULT_OUT = Path("docs") / "metrics_calibration.md"
FITTED = [name for name in judge.WEIGHTS if name != "noise_spread"]  # no reseeds in recordings
SHOWN = {
    MUSIC_FD: "music_fd",
    TAG_KL: "tag_kl",
    **{v: k for k, v in DRIFTS.items()},
    REPETITION: "repetition",
}
Rows = dict[str, list[cal.Row]]


def measure(
    genres: list[list[str]], points: int, seed: int, cache: Path | None
) -> tuple[Rows, float]:
    """Genre name -> its rows, and the seconds measuring took; from `cache` when it holds the
    same request."""
    request = {"genres": genres, "points": points, "seed": seed}
    if cache and cache.is_file():
        saved = torch.load(cache, weights_only=False)
        if saved["request"] == request:  # the terms as today's judge computes them
            for row in (row for rows in saved["rows"].values() for row in rows):
                row.terms = judge.terms(row.values, row.scales)
            return saved["rows"], saved.get("seconds", math.nan)
    started, rows = time.perf_counter(), {}
    for name, *paths in genres:
        begun = time.perf_counter()
        rows[name] = cal.genre_rows(paths, points, seed)
        print(f"{name}: {len(rows[name])} cases in {time.perf_counter() - begun:.0f} s")
    seconds = time.perf_counter() - started
    if cache:
        torch.save({"request": request, "rows": rows, "seconds": seconds}, cache)
    return rows, seconds


def scores(rows: list[cal.Row], weights: dict[str, float]) -> dict[str, float]:
    """Case name -> Σ weight · term (a missing term counts 0, as in `judge`)."""
    return {
        row.case.name: sum(w * (row.terms.get(k) or 0.0) for k, w in weights.items())
        for row in rows
    }


def fit(per_genre: Rows) -> tuple[dict[str, float], float]:
    """The weights over `FITTED` terms (≥ 0) of `judge`'s docstring, and their margin: the
    largest smallest margin over every ordering of every genre, in units of the truth's score
    (the truths' mean score is 1), with no term above `judge.MAX_TERM_SHARE` and the music
    terms at least `judge.MIN_MUSIC_SHARE` of the mean case's score."""
    from scipy.optimize import linprog  # benchmark-only dependency (the dev extra)

    n, bound = len(FITTED), []
    every = [row for rows in per_genre.values() for row in rows]
    mean = [sum(row.terms.get(k) or 0.0 for row in every) / len(every) for k in FITTED]
    for rows in per_genre.values():
        by_name = {row.case.name: row for row in rows}
        for rule in cal.orderings([row.case for row in rows]):
            worse, better = by_name[rule.worse].terms, by_name[rule.better].terms
            diff = [(worse[k] or 0.0) - rule.ratio * (better[k] or 0.0) for k in FITTED]
            bound.append([-d for d in diff] + [1.0])  # δ − Σ w·diff ≤ 0
    for i in range(n):  # w_i·mean_i ≤ MAX_TERM_SHARE · Σ w·mean
        bound.append([(i == j) * m - judge.MAX_TERM_SHARE * m for j, m in enumerate(mean)] + [0])
    music = [(k in judge.MUSIC_TERMS) * m for k, m in zip(FITTED, mean, strict=True)]
    bound.append([judge.MIN_MUSIC_SHARE * m - u for m, u in zip(mean, music, strict=True)] + [0])
    truths = [t for rows in per_genre.values() for t in rows if t.case.family == "truth"]
    unit = [sum(t.terms.get(k) or 0.0 for t in truths) / len(truths) for k in FITTED]
    result = linprog(
        c=[0.0] * n + [-1.0],
        A_ub=bound,
        b_ub=[0.0] * len(bound),
        A_eq=[unit + [0.0]],
        b_eq=[1.0],
        bounds=[(0, None)] * n + [(None, None)],
        method="highs",
    )
    if not result.success:
        raise RuntimeError(f"the fit failed: {result.message}")
    weights = {k: round(float(w), 3) for k, w in zip(FITTED, result.x[:n], strict=True)}
    return weights, float(result.x[n])


def fmt(value: float | None) -> str:
    """A table cell: `value` to 3 significant digits (exponent form from 1e4), "n/a" for None."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def genre_table(rows: list[cal.Row], score: dict[str, float]) -> list[str]:
    """One genre's markdown table: per case, the shown metrics, the score, the score ÷ the truth's,
    and the detectors that fire."""
    truth = score["truth"]
    head = ["case", *SHOWN.values(), "score ↓", "× truth", "detectors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        name = row.case.name
        cells = [
            name,
            *(fmt(row.values[k]) for k in SHOWN),
            fmt(score[name]),
            f"{score[name] / truth:.2f}×" if truth > 0 else "n/a",
            ", ".join(row.detectors) or "none",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation (ties get their mean rank)."""

    def ranks(v: list[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        order = t.argsort().argsort().double()
        for value in t.unique():
            order[t == value] = order[t == value].mean()
        return order - order.mean()

    a, b = ranks(x), ranks(y)
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else math.nan


def correlations(rows: list[cal.Row], score: dict[str, float]) -> str:
    """Per family with ≥ 2 strengths (the truth as the weakest): Spearman of the score."""
    cells = []
    for family in sorted({row.case.family for row in rows} - {"truth"}):
        members = [row.case for row in rows if row.case.family == family]
        if len({c.strength for c in members}) < 2:
            continue
        x = [-1e9] + [c.strength for c in members]
        y = [score["truth"]] + [score[c.name] for c in members]
        cells.append(f"{family} {spearman(x, y):+.2f}")
    return ", ".join(cells)


def document(
    per_genre: Rows, weights: dict[str, float], fitted: str, seconds: float, sources: str
) -> str:
    """The markdown document: its sources and weights, then per genre its table, the score's
    Spearman correlations and the orderings broken."""
    lines = [
        "# The judge's calibration on real music",
        "",
        f"Generated by `python benchmarks/calibrate_metrics.py` (measuring took {seconds:.0f} s "
        "on 2 CPU cores); do not edit by hand. Method: `samplegan_tune/judge/calibration.py`; "
        "the score: `samplegan_tune/judge/score.py`.",
        "",
        sources,
        "",
        "Weights: " + ", ".join(f"{k} {w:g}" for k, w in weights.items() if w > 0) + ".",
        "",
        fitted,
        "",
    ]
    for genre, rows in per_genre.items():
        score = scores(rows, weights)
        broken = cal.violations(rows, score)
        lines += [f"## {genre}", "", *genre_table(rows, score), ""]
        lines += [f"Spearman of the score with strength: {correlations(rows, score)}.", ""]
        lines += ["Orderings broken: " + ("; ".join(broken) or "none") + ".", ""]
    return "\n".join(lines)


def describe(genres: list[list[str]], points: int) -> str:
    """Where each genre's audio came from, for the document's head."""
    parts = []
    for name, *paths in genres:
        folders = sorted({str(Path(p).parent) for p in paths})
        parts.append(f"{name}: {len(paths)} files in {', '.join(folders)}")
    return (
        f"Audio (Debian packages, never committed): {'; '.join(parts)}. Each genre: every "
        f"other file gives the reference ({cal.REFERENCE_CLIPS} true 8-s continuations of "
        f"3-s primers), the rest {points} held-out primers, each case {points} clips of "
        "8 s; `× truth` is the score ÷ the truth's in that genre."
    )


def leave_one_out(per_genre: Rows) -> str:
    """Each genre checked with weights fitted on the other genres."""
    if len(per_genre) < 2:
        return ""
    parts = []
    for genre, rows in per_genre.items():
        weights, _ = fit({g: r for g, r in per_genre.items() if g != genre})
        broken = cal.violations(rows, scores(rows, weights))
        total = len(cal.orderings([row.case for row in rows])) + len(cal.QUIET)
        parts.append(
            f"{genre}: {len(broken)} of {total} broken"
            + (f" ({'; '.join(broken)})" if broken else "")
        )
    return "Leave one genre out (weights fitted on the others): " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    """Measure every genre (or read --rows), fit the weights with --fit, write the document to --out
    and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genre",
        nargs="+",
        action="append",
        metavar=("NAME", "PATH"),
        help="a genre's name and its audio",
    )
    parser.add_argument("--points", type=int, default=12, help="held-out primers per genre")
    parser.add_argument("--seed", type=int, default=0, help="which primers and noise draws")
    parser.add_argument("--fit", action="store_true", help="fit the weights (needs scipy)")
    parser.add_argument("--rows", type=Path, help="keep the measured rows in this file")
    parser.add_argument("--out", type=Path, help=f"markdown file (default: {DEFAULT_OUT})")
    parser.add_argument("--smoke", action="store_true", help="5 synthetic songs, 1 primer")
    args = parser.parse_args(argv)
    if args.smoke:
        _smoke_inputs(args)
    elif not args.genre:
        parser.error("--genre NAME PATH... is required (or --smoke)")
    args.out = args.out or DEFAULT_OUT
    per_genre, seconds = measure(args.genre, args.points, args.seed, args.rows)
    weights = {k: w for k, w in judge.WEIGHTS.items() if k != "noise_spread"}
    fitted = "Weights as in `judge.WEIGHTS` (no --fit)."
    if args.fit:
        weights, margin = fit(per_genre)
        fitted = (
            f"Fitted with --fit: smallest margin {margin:.3g}. {leave_one_out(per_genre)}"
            f"\n\nFor judge.WEIGHTS: {weights}"
        )
    text = document(per_genre, weights, fitted, seconds, describe(args.genre, args.points))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


def _smoke_inputs(args: argparse.Namespace) -> None:
    """For --smoke: one genre of five 30-s synthetic songs in a temporary folder (every other one
    gives the reference, which needs 32 primer points: 13 a song), 1 primer, --out there unless
    given."""
    where = folder("calibrate-metrics")
    args.genre = [["synthetic", *write_songs(where / "music", 5)]]
    args.points = 1
    args.out = args.out or where / "metrics_calibration.md"


if __name__ == "__main__":
    sys.exit(main())
