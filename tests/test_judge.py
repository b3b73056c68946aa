"""The judge (`quality/score`) on real music of three genres, and its terms' shape.

The genre tests need the freely licensed game music that Debian packages (.ci/run installs
it; locally: `apt-get install fretsonfire-songs-muldjord wesnoth-1.16-music hyperrogue-music`).
They check the committed weights on primers the fit never saw (`calibration.primed` with
another seed than `benchmarks/calibrate_metrics.py` uses).
"""

from __future__ import annotations

import glob

import pytest
import torch

from samplegan_tune.judge import calibration as cal
from samplegan_tune.judge import metric_names as n
from samplegan_tune.judge import score as judge

GENRES = {
    "metal": "/usr/share/games/fretsonfire/data/songs/muldjord/*/song.ogg",
    "orchestral": "/usr/share/games/wesnoth/1.16/data/core/music/*.ogg",
    "game-ambient": "/usr/share/hyperrogue/music/*.ogg",
}
FILES_PER_GENRE = 8
POINTS = 12  # as the calibration: fewer clips leave near-inaudible cases within set noise
HELD_OUT_SEED = 6  # the fit saw seed 0's primers; seeds 3 and 5 were seen while developing


def music_of(genre: str) -> list[str]:
    files = sorted(glob.glob(GENRES[genre]))[:FILES_PER_GENRE]
    if len(files) < 4:
        pytest.skip(f"needs the Debian music of {genre} ({GENRES[genre]}; .ci/run installs it)")
    return files


@pytest.mark.slow
@pytest.mark.parametrize("genre", list(GENRES))
def test_the_judge_orders_degradations_of_real_music_as_a_listener_would(genre: str) -> None:
    torch.set_num_threads(2)
    rows = cal.genre_rows(music_of(genre), POINTS, seed=HELD_OUT_SEED)
    by_name = {row.case.name: row for row in rows}
    truth = by_name["truth"].score
    # Every family, ratio and quiet case (calibration.py); the two near-inaudible cases may
    # come within 10 % of the truth on these unseen primers (calibration.NEAR_INAUDIBLE).
    assert cal.violations(rows, slack=cal.HELD_OUT_SLACK) == []
    others = [row.score for row in rows if row.case.name not in ("truth", *cal.NEAR_INAUDIBLE)]
    assert truth < min(others), "the true continuation scores best"
    for name in cal.AUDIBLE:  # spelled out: another key and tempo, a 50-ms shuffle
        assert by_name[name].score >= 1.2 * truth, name
    assert by_name["grains 200 ms"].score > truth
    for name in cal.GROSS:
        assert by_name[name].detectors or by_name[name].score >= 1.5 * truth, name
    for name in cal.QUIET:
        assert not by_name[name].detectors, name


SCALES = {"logmel": 1.0, "music": 1.0, "flatness": 0.01}


def values(**given: float) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(n.METRICS)
    out[n.FD] = 0.0
    out.update({getattr(n, k.upper()): v for k, v in given.items()})
    return out


def test_liveliness_is_charged_above_as_below_real_music() -> None:
    for metric in ("repetition", "change"):
        busy = judge.terms(values(**{metric: 2.0}), SCALES)[metric]
        dull = judge.terms(values(**{metric: 0.5}), SCALES)[metric]
        assert busy == pytest.approx(dull) and busy > 0
        assert judge.terms(values(**{metric: 1.0}), SCALES)[metric] == 0
    flat = judge.terms(values(flatness=0.04), SCALES)["flatness"]
    assert flat == pytest.approx(judge.terms(values(flatness=0.0025), SCALES)["flatness"])


def test_a_term_without_its_metric_is_named_and_counts_nothing() -> None:
    reasons: dict[str, str] = {}
    score = judge.quality_score(values(repetition=1.0), SCALES, reasons)
    assert score == 0 and "tag_kl" in reasons[n.SCORE] and "repetition" not in reasons[n.SCORE]
    assert judge.quality_score(values() | {n.FD: None}, SCALES, {}) is None
