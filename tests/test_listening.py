"""The listening page, rendered from a real checkpoint and real held-out audio (no Ray): the
score scale, spectrograms with axes on one colour scale, the A/B pairs, rounded parameters,
and why each early-ended trial ended; then in headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from samplegan_tune.core.config import TrainConfig
from samplegan_tune.judge.scale import LOOPED, NOISE, REAL, REPEATED
from samplegan_tune.models.checkpoint import save_checkpoint
from samplegan_tune.report.listening import write_page
from samplegan_tune.tuning.experiment import Experiment, prepare_trial_data
from samplegan_tune.tuning.leaderboard import Entry, Leaderboard
from samplegan_tune.tuning.ranking import TrialSummary
from samplegan_tune.tuning.space import load_space
from samplegan_tune.tuning.trial import Trial
from tests.conftest import TINY, chromium

SCALE = {REAL: 3.0, REPEATED: 15.0, LOOPED: 25.0, NOISE: 30.0}


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page")
    space = load_space("smoke")
    exp = Experiment(
        name="page-test",
        folder=root / "page-test",
        tune_storage=str(root),
        space_name="smoke",
        space_yaml=Path(space_file()).read_text(),
        settings=space.settings,
        data=["synthetic"],
        num_samples=2,
        cache_dir=str(root / "cache"),
    )
    exp.save()
    data = prepare_trial_data(exp)
    trial = Trial(TrainConfig.from_dict(TINY), data, space.settings)
    for _ in range(3):
        trial.trainer.step()
    save_checkpoint(exp.folder / "ranked" / "1" / "trial.pt", trial.state_dict())
    entry = Entry(
        rank=1,
        trial_id="t1",
        final_score=5.0,
        score_spread=0.1234,
        search_score=4.0,
        step=3,
        checkpoint="ranked/1/trial.pt",
        params={"lr_g": 0.000123456789, "adv_loss": "hinge"},
        baseline=True,
    )
    summaries = [
        TrialSummary("t1", "completed", 4.0, 3, 1.0, [(1, 6.0), (2, 4.0)]),
        TrialSummary("t2", "looping", 1e6, 3, 1.0, [(1, 9.0)], "quality/repetition = 0.01"),
    ]
    return write_page(exp, data, Leaderboard([entry], SCALE), summaries)


def space_file() -> str:
    from samplegan_tune.tuning.space import resolve_space

    return str(resolve_space("smoke"))


def test_page_has_the_scale_rounded_params_and_why_trials_ended(page: Path) -> None:
    text = page.read_text()
    assert "<title>page-test" in text and "Search search" not in text
    scale = text[text.index("id='scale'") :]
    assert all(name in scale for name in SCALE) and "0.0909 of the way" in text
    assert ">0.000123<" in text and "0.000123456789" not in text and "± 0.123" in text
    early = text[text.index("id='early'") :]
    assert "looping" in early and "quality/repetition = 0.01" in early
    assert "#1: trial t1 (baseline: the space's defaults" in text  # the baseline is marked


def test_spectrograms_have_axes_one_colour_scale_and_ab_pairs(page: Path) -> None:
    text = page.read_text()
    media = page.parent / "media"
    for side in ("generated", "true"):
        assert (media / f"rank1-{side}.wav").is_file() and (media / f"rank1-{side}.png").is_file()
    assert text.count("class='spectrogram'") == 2 and text.count("id='colour-bar'") == 1
    assert "time (s)" in text and "frequency (Hz, mel)" in text and ">1k<" in text
    assert text.count("class='primer-end'") == 2
    ticks = re.findall(r"class='tick x'[^>]*>(\d+)<", text)
    assert ticks[:6] == ["0", "1", "2", "3", "4", "5"]


def test_page_renders_in_chromium(page: Path, tmp_path: Path) -> None:
    dom = chromium(page, tmp_path, "--dump-dom")
    assert "B: true continuation" in dom and "frequency (Hz, mel)" in dom and "<audio" in dom
    shot = tmp_path / "page.png"
    chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1300,1600")
    assert shot.is_file() and shot.stat().st_size > 20_000
    shutil.copy(shot, Path("/tmp/listening-page.png"))  # for a person to look at
