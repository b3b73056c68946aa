"""The judge's calibration on real music: graded degradations of true continuations, scored,
and the orderings a listener would give them.

As the FAD paper calibrates (Kilgour et al. 2019): in one genre's files, every other file
gives the reference (true continuations of 3-s primers), the others give held-out primers and
the 8 s that really follow them; `degrade.graded_cases` turns those into graded degradations
and the seed's failures. `orderings` lists what the score must respect (module `judge`:
its weights are fitted on these by `benchmarks/calibrate_metrics.py --fit`, and
tests/test_judge.py checks them on other primers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from samplegan_tune.audio.sound import find_audio_files, load_audio
from samplegan_tune.judge import score as judge
from samplegan_tune.judge.collapse import rollout_reasons
from samplegan_tune.judge.degrade import Case, graded_cases
from samplegan_tune.judge.metric_names import SCORE
from samplegan_tune.judge.metrics import RealReference, evaluate_clips

RATE = 16000
PRIMER_SECONDS = 3.0
CONTINUATION_SECONDS = 8.0
REFERENCE_CLIPS = 32
GROSS = (
    "grains 10 ms",
    "gate 40–120 ms",
    "drone",
    "noise 0 dB",
    "static",
    "silence −80 dBFS",
    "loop 500 samples",
    "loop 4096 samples",
    "loop 1 s",
    "repeated last second",
)
"""Cases that must be flagged by a detector or score ≥ `GROSS_RATIO` × the truth."""
GROSS_RATIO = 1.5
AUDIBLE = ("speed ×1.19", "speed ×0.84", "grains 50 ms")
"""Cases that must score ≥ `AUDIBLE_RATIO` × the truth: another key and tempo, a shuffle."""
AUDIBLE_RATIO = 1.2
GRADED = ("noise", "low-pass", "grains", "clip", "quantise")
"""Families that must score worse as they get stronger."""
QUIET = ("truth", "noise 20 dB", "low-pass 4 kHz")
"""Cases on which no detector may fire."""
NEAR_INAUDIBLE = ("clip 0.5 × peak", "quantise 8 bit")
"""The mildest clipping and quantisation: on primers the fit never saw, set statistics of a
dozen clips cannot always order them against the truth (8-bit quantisation of ambient music
scored 0.95× the truth on one held-out draw); there a check may allow `HELD_OUT_SLACK`."""
HELD_OUT_SLACK = 0.9


@dataclass(frozen=True)
class Ordering:
    """`worse` must score ≥ `ratio` × `better` (strictly more when ratio is 1)."""

    worse: str
    better: str
    ratio: float
    gross: bool = False  # met as well when a detector fires on `worse`


@dataclass
class Row:
    """One case of one genre: its metric values, the judge's terms, detectors, score, and
    the reference's `judge_scales` (so the terms can be recomputed)."""

    case: Case
    values: dict[str, float | None]
    terms: dict[str, float | None]
    detectors: list[str]
    scales: dict[str, float]

    @property
    def score(self) -> float:
        """The judge's score of this case (its quality/score value)."""
        return float(self.values[SCORE])


def songs_of(paths: list[str]) -> list[torch.Tensor]:
    """Every audio file under `paths`, decoded at 16 kHz, in name order."""
    return [load_audio(p, RATE) for p in find_audio_files([Path(p) for p in paths])]


def primed(songs: list[torch.Tensor], count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(primers (B, P), true continuations (B, T)) at `count` points of `songs`, from 5 s in,
    spread evenly and shifted by `seed` seconds (another seed: other points)."""
    p, t = round(PRIMER_SECONDS * RATE), round(CONTINUATION_SECONDS * RATE)
    start = (5 + seed % 7) * RATE + p
    spans = [(s, i) for s in songs for i in range(start, len(s) - t - RATE, RATE)]
    if len(spans) < count:
        raise ValueError(f"the audio holds {len(spans)} primer points, {count} wanted")
    chosen = [spans[round(k * (len(spans) - 1) / max(1, count - 1))] for k in range(count)]
    primers = torch.stack([s[i - p : i] for s, i in chosen])
    return primers, torch.stack([s[i : i + t] for s, i in chosen])


def genre_rows(paths: list[str], points: int, seed: int = 0) -> list[Row]:
    """Every case of `degrade.graded_cases` for `points` held-out primers of one genre."""
    songs = songs_of(paths)
    if len(songs) < 2:
        raise ValueError(f"{paths}: need ≥ 2 audio files (reference and held-out)")
    ref_primers, ref_truths = primed(songs[0::2], REFERENCE_CLIPS, seed=0)
    reference = RealReference.from_clips(ref_truths, RATE, primers=ref_primers)
    primers, truths = primed(songs[1::2], points, seed)
    rows = []
    for case in graded_cases(truths, primers, RATE, seed):
        values, _ = evaluate_clips(case.clips, reference, primers=primers)
        scales = reference.judge_scales
        found = judge.terms(values, scales)
        rows.append(Row(case, values, found, rollout_reasons(case.clips, reference), scales))
    return rows


def orderings(cases: list[Case]) -> list[Ordering]:
    """What the score must respect among `cases` (of `degrade.graded_cases`)."""
    out = []
    for name in (case.name for case in cases if case.family != "truth"):
        ratio = GROSS_RATIO if name in GROSS else AUDIBLE_RATIO if name in AUDIBLE else 1.0
        out.append(Ordering(name, "truth", ratio, gross=name in GROSS))
    for family in GRADED:
        members = sorted((c for c in cases if c.family == family), key=lambda c: c.strength)
        out += [Ordering(b.name, a.name, 1.0) for a, b in zip(members, members[1:], strict=False)]
    return out


def violations(
    rows: list[Row], scores: dict[str, float] | None = None, slack: float = 1.0
) -> list[str]:
    """Each ordering (and quiet case) `rows` break, in words; `scores` overrides their
    scores (e.g. under other weights); `slack` < 1 lets a `NEAR_INAUDIBLE` case score down to
    that share of the truth's."""
    by_name = {row.case.name: row for row in rows}
    score = scores or {name: row.score for name, row in by_name.items()}
    broken = []
    for rule in orderings([row.case for row in rows]):
        if rule.gross and by_name[rule.worse].detectors:
            continue
        ratio = slack if rule.worse in NEAR_INAUDIBLE and rule.better == "truth" else rule.ratio
        need = ratio * score[rule.better]
        if not (score[rule.worse] > need if ratio == 1.0 else score[rule.worse] >= need):
            broken.append(
                f"{rule.worse} {score[rule.worse]:.3g} < {rule.ratio:g} × "
                f"{rule.better} {score[rule.better]:.3g}"
            )
    for name in QUIET:
        if by_name[name].detectors:
            broken.append(f"{name}: detectors {', '.join(by_name[name].detectors)} fire")
    return broken
