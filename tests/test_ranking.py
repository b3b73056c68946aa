"""The leaderboard's order: score first, training length within the ranking's resolution."""

from __future__ import annotations

from pathlib import Path

from samplegan_tune.tuning.leaderboard import (
    Entry,
    Leaderboard,
    read_leaderboard,
    write_leaderboard,
)
from samplegan_tune.tuning.ranking import order


def _entry(trial: str, score: float, adversarial_steps: int) -> Entry:
    return Entry(
        rank=0,
        trial_id=trial,
        final_score=score,
        score_spread=0.0,
        search_score=score,
        step=adversarial_steps + 100,
        checkpoint="",
        params={},
        adversarial_steps=adversarial_steps,
    )


def _ids(entries: list[Entry]) -> list[str]:
    return [e.trial_id for e in entries]


def test_a_tie_goes_to_the_longer_trained_and_a_clear_win_to_the_better_score() -> None:
    # The 2026-12-05 benchmark's four candidates: within 3.6 %, the 3400-step one best on
    # unseen music; then a clearly worse one that trained longest of all.
    short, long_final, short_parent, long_parent, worse = (
        _entry("short", 3.01, 600),
        _entry("long", 3.05, 3300),
        _entry("parent", 3.07, 500),
        _entry("baseline", 3.12, 2800),
        _entry("worse", 4.0, 9000),
    )
    entries = [worse, short_parent, short, long_parent, long_final]
    assert _ids(order(entries, 0.05)) == ["long", "baseline", "short", "parent", "worse"]
    assert _ids(order(entries, 0.0)) == ["short", "long", "parent", "baseline", "worse"]
    # A tie is measured from the best score left: 4.0 is never within 5 % of 3.01.
    assert _ids(order([short, worse], 0.05)) == ["short", "worse"]


def test_the_leaderboard_says_how_ties_are_broken(tmp_path: Path) -> None:
    board = Leaderboard([_entry("a", 3.0, 500)], tie=0.05)
    write_leaderboard(tmp_path, board)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "within 5 % of the best left are a tie" in text
    assert "| adversarial steps |" in text and "| 500 |" in text
    assert read_leaderboard(tmp_path).tie == 0.05
