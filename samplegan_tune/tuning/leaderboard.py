"""The leaderboard files of a ranked search: leaderboard.json / .csv / .md, with the score
scale (see `scale.py`) beside the entries, so every score can be read against real music, a
loop and noise. Reading them back needs neither Ray nor Optuna."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from samplegan_tune.core.fileio import atomic_path
from samplegan_tune.judge.scale import LOOPED, REAL, position

LEADERBOARD = "leaderboard"  # .csv, .md, .json in the experiment folder


@dataclass
class Entry:
    """One ranked survivor."""

    rank: int
    trial_id: str
    final_score: float  # mean quality/score over the ranking seeds (lower = better)
    score_spread: float  # std over those seeds
    search_score: float  # best quality/score the trial reported during the search
    step: int
    checkpoint: str  # local copy of the checkpoint that was re-evaluated
    params: dict[str, Any]
    metrics: dict[str, float | None] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # detectors that fire on it: not music
    baseline: bool = False  # the search's first trial: the space's defaults
    continues: str = ""  # a final-fit trial: the search trial it continues
    adversarial_steps: int = 0  # of `step`, those after stage 1 and D's warm-up


@dataclass
class Leaderboard:
    """A ranked search's entries, with the score scale, the rejected trials, the budget split and
    the tie margin."""

    entries: list[Entry]
    scale: dict[str, float] = field(default_factory=dict)  # reference -> quality/score
    rejected: dict[str, list[str]] = field(default_factory=dict)  # trial -> detectors
    budget: dict[str, int] = field(default_factory=dict)  # training steps by how trials ended
    tie: float = 0.0  # scores within this fraction ranked by adversarial steps (ranking.order)


def sig3(value: Any) -> Any:
    """Numbers to 3 significant digits (for reading; the JSON keeps full precision)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(f"{value:.3g}") if isinstance(value, float) else value


def write_leaderboard(folder: Path, board: Leaderboard) -> None:
    """Write leaderboard.json (everything), .csv (one row per entry) and .md (both tables)."""
    data = {
        "scale": board.scale,
        "rejected": board.rejected,
        "budget": board.budget,
        "tie": board.tie,
        "entries": [asdict(e) for e in board.entries],
    }
    with atomic_path(folder / f"{LEADERBOARD}.json") as path:  # a full disk: OutputError
        path.write_text(json.dumps(data, indent=2))
    # The scale rides along in every CSV row, so a spreadsheet can place each score too.
    rows = [
        {**_row(e, board.scale), **{f"scale: {k}": sig3(v) for k, v in board.scale.items()}}
        for e in board.entries
    ]
    columns = list(rows[0]) if rows else ["rank", "trial", "final score", "position"]
    with atomic_path(folder / f"{LEADERBOARD}.csv") as path, open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = [c for c in columns if not c.startswith("scale: ")]  # the .md has its own table
    with atomic_path(folder / f"{LEADERBOARD}.md") as path:
        path.write_text(_markdown(board, shown, rows))


def _markdown(board: Leaderboard, columns: list[str], rows: list[dict[str, Any]]) -> str:
    lines = ["# Leaderboard (quality/score, lower is better)", ""]
    if board.scale:
        lines += [
            "Scale: the same metrics on references that continue held-out primers "
            "(position: 0 = real music, 1 = a looped segment).",
            "",
            "| reference | quality/score | position |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {sig3(score)} | {sig3(position(score, board.scale))} |"
            for name, score in board.scale.items()
        ]
        lines.append("")
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    if board.tie:
        lines += [
            "",
            f"Scores within {100 * board.tie:.0f} % of the best left are a tie: the "
            "checkpoint with more adversarial steps ranks first.",
        ]
    if board.budget:
        lines += ["", budget_line(board)]
    if any(e.flags for e in board.entries):
        lines += [
            "",
            "**No trial passed the collapse detectors.** These are the best attempts, "
            "each flagged (column `flagged`) with the failure it shows.",
        ]
    if board.rejected:
        lines += ["", "Candidates left off: they collapse when they play for longer:", ""]
        lines += [f"- trial {t}: {', '.join(r)}" for t, r in board.rejected.items()]
    return "\n".join(lines) + "\n"


def budget_line(board: Leaderboard) -> str:
    """Where the search's training steps went, and what rank 1 trained."""
    total = sum(board.budget.values())
    shares = ", ".join(
        f"{group} {100 * steps / total:.0f} %" for group, steps in board.budget.items() if steps
    )
    line = f"Budget: {total} training steps: {shares}." if total else "Budget: no steps trained."
    if board.entries:
        top = board.entries[0]
        line += (
            f" Rank 1 trained {top.step} steps, {top.adversarial_steps} of them adversarial "
            "(after stage 1 and D's warm-up)."
        )
    return line


def _row(e: Entry, scale: dict[str, float]) -> dict[str, Any]:
    where = position(e.final_score, scale)
    trial = f"{e.trial_id} (final fit of {e.continues})" if e.continues else e.trial_id
    return {
        "rank": e.rank,
        "trial": f"{trial} (baseline)" if e.baseline else trial,
        "final score": f"{sig3(e.final_score)} ± {sig3(e.score_spread)}",
        "position": sig3(where) if math.isfinite(where) else "",
        "search score": sig3(e.search_score) if math.isfinite(e.search_score) else "",
        "flagged": ", ".join(e.flags),
        "step": e.step,
        "adversarial steps": e.adversarial_steps,
        "params": json.dumps({k: sig3(v) for k, v in e.params.items()}, sort_keys=True),
    }


def read_leaderboard(folder: Path) -> Leaderboard:
    """The leaderboard in `folder` (empty when there is none)."""
    path = folder / f"{LEADERBOARD}.json"
    if not path.is_file():
        return Leaderboard([])
    data = json.loads(path.read_text())
    if isinstance(data, list):  # written before the scale existed
        data = {"entries": data}
    return Leaderboard(
        [Entry(**e) for e in data["entries"]],
        data.get("scale", {}),
        data.get("rejected", {}),
        data.get("budget", {}),
        data.get("tie", 0.0),
    )


def describe_position(score: float, scale: dict[str, float]) -> str:
    """E.g. "0.42 of the way from real music to a loop" (empty without a scale)."""
    where = position(score, scale)
    if not math.isfinite(where):
        return ""
    return (
        f"{sig3(where)} of the way from {REAL} ({sig3(scale[REAL])}) to a {LOOPED} "
        f"({sig3(scale[LOOPED])})"
    )
