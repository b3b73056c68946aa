"""`samplegan-tune evaluate`: the real command in a subprocess, and its bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samplegan_tune.audio.sound import write_wav
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.cli.evaluate import run_evaluate
from samplegan_tune.core.errors import UserInputError

SR = 16000


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small tensors: a second thread only contends


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real music (a folder of 2 songs), other music and white noise (one file each)."""
    root = tmp_path_factory.mktemp("audio")
    for name, song in synthetic_songs(40.0, SR, seed=5):
        write_wav(root / "real" / f"{name}.wav", song, SR)
    (_, other), *_ = synthetic_songs(20.0, SR, seed=6)
    write_wav(root / "music.wav", other, SR)
    noise = 0.1 * torch.randn(20 * SR, generator=torch.Generator().manual_seed(0))
    write_wav(root / "noise.wav", noise, SR)
    write_wav(root / "short.wav", noise[: SR // 2], SR)
    return {
        "real": root / "real",
        "music": root / "music.wav",
        "noise": root / "noise.wav",
        "short": root / "short.wav",
        "root": root,
    }


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samplegan_tune.cli", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # small tensors: threads only contend
    )


def strict_json(text: str) -> dict:
    def no_nan(token: str) -> float:
        raise AssertionError(f"{token} in the JSON output")

    return json.loads(text, parse_constant=no_nan)


def judged(real: Path, generated: Path, *more: str | Path) -> dict:
    """`evaluate --real REAL --generated GENERATED MORE --json`: it exits 0; its report."""
    result = cli("--real", real, "--generated", generated, *more, "--json")
    assert result.returncode == 0, result.stderr
    return strict_json(result.stdout)


def test_music_ranks_far_better_than_white_noise(audio: dict[str, Path]) -> None:
    music = cli("--real", audio["real"], "--generated", audio["music"], "--json")
    noise = cli("--real", audio["real"], "--generated", audio["noise"], "--json")
    assert music.returncode == 0 and noise.returncode == 0, music.stderr + noise.stderr
    good, bad = strict_json(music.stdout), strict_json(noise.stdout)
    # the judge's contract for a gross failure (samplegan_tune/judge/calibration.py): flagged, and
    # here ≥ 1.5× as well
    assert bad["quality/score"] > 1.5 * good["quality/score"]
    assert good["collapse/reason"] is None and bad["collapse/reason"] == "static"
    drifts = {f"quality/{k}_drift" for k in ("key", "tempo", "timbre", "level")}
    assert set(good["unavailable"]) == {"quality/noise_spread", "quality/score", *drifts}
    assert good["quality/noise_spread"] is None and good["clips/generated"] == 5
    assert good["quality/music_fd"] < bad["quality/music_fd"]


def test_primers_judge_each_continuation_against_what_it_continues(tmp_path: Path) -> None:
    """The true continuation of each primer keeps its key and tempo; the same audio given as
    the continuation of other songs' primers (another key and tempo) drifts."""
    songs = synthetic_songs(120.0, SR, seed=8)  # four songs, each in its own key and tempo
    for name, song in songs[:2]:
        write_wav(tmp_path / "real" / f"{name}.wav", song, SR)
    cut = 20 * SR
    for i, (_, song) in enumerate(songs[2:]):
        write_wav(tmp_path / "primers" / f"{i}.wav", song[cut - 3 * SR : cut], SR)
        write_wav(tmp_path / "true" / f"{i}.wav", song[cut : cut + 4 * SR], SR)
        write_wav(tmp_path / "swapped" / f"{1 - i}.wav", song[cut : cut + 4 * SR], SR)
    found = {}
    for case in ("true", "swapped"):
        found[case] = judged(tmp_path / "real", tmp_path / case, "--primers", tmp_path / "primers")
        assert "quality/key_drift" not in found[case]["unavailable"]
    assert found["swapped"]["quality/key_drift"] > 1.5 * found["true"]["quality/key_drift"]
    assert found["swapped"]["quality/score"] > found["true"]["quality/score"]
    lonely = cli(
        "--real",
        tmp_path / "real",
        "--generated",
        tmp_path / "true",
        "--primers",
        tmp_path / "primers" / "0.wav",
    )
    assert lonely.returncode == 2 and "1 files for 2 --generated" in lonely.stderr


def test_a_loop_of_the_song_ranks_clearly_worse_than_its_continuation(tmp_path: Path) -> None:
    """The song's first 24 s are the real set; its next 16 s (unseen) and two loops made
    from the audio just before them (4096 and 500 samples, repeated for 16 s) are scored."""
    (_, song), *_ = synthetic_songs(40.0, SR, seed=8)
    cut = 24 * SR
    write_wav(tmp_path / "real" / "first.wav", song[:cut], SR)
    write_wav(tmp_path / "continuation.wav", song[cut:], SR)
    for period in (4096, 500):
        looped = song[cut - period : cut].repeat(16 * SR // period + 1)[: 16 * SR]
        write_wav(tmp_path / f"loop{period}.wav", looped, SR)
    runs = {
        name: cli("--real", tmp_path / "real", "--generated", tmp_path / f"{name}.wav", "--json")
        for name in ("continuation", "loop4096", "loop500")
    }
    assert all(r.returncode == 0 for r in runs.values()), [r.stderr for r in runs.values()]
    report = {name: strict_json(r.stdout) for name, r in runs.items()}
    honest = report["continuation"]
    assert honest["collapse/detectors"] == [] and honest["quality/repetition"] > 0.6
    for name in ("loop4096", "loop500"):
        assert report[name]["quality/score"] > 2 * honest["quality/score"], name
        assert "looping" in report[name]["collapse/detectors"], name
        assert report[name]["quality/repetition"] < 0.05, name


def test_table_shows_unavailable_metrics_with_their_reason(audio: dict[str, Path]) -> None:
    result = cli("--real", audio["real"], "--generated", audio["music"], "--clip-seconds", "8")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "n/a (needs ≥ 4 generated and real clips)" in lines["quality/kid"]
    assert "partial" in lines["quality/score"] and "nan" not in result.stdout.lower()


def test_bad_input_exits_2_naming_the_culprit(audio: dict[str, Path]) -> None:
    result = cli("--real", audio["root"] / "missing", "--generated", audio["music"])
    assert result.returncode == 2 and "missing" in result.stderr and "--real" in result.stderr
    assert result.stdout == ""


def test_bad_inputs_raise_user_errors(audio: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    cases = [
        (dict(generated=[str(empty)]), "empty"),
        (dict(generated=[str(junk)]), "junk.wav"),
        (dict(generated=[str(audio["short"])]), "no file is as long as one"),
        (dict(generated=[str(audio["music"])], embedding=str(junk)), "junk.wav"),
        (dict(generated=[str(audio["music"])], clip_seconds=0.2), "--clip-seconds"),
        (dict(generated=[str(audio["music"])], sample_rate=0), "--sample-rate"),
    ]
    for kwargs, culprit in cases:
        with pytest.raises(UserInputError, match=culprit):
            run_evaluate([str(audio["real"])], **kwargs)


class _Energy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.unfold(1, 400, 200)  # (B, F, 400)
        return torch.stack([frames.pow(2).mean(-1).log1p(), frames.abs().amax(-1)], dim=-1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_torchscript_embedding_file_can_be_used(audio: dict[str, Path], tmp_path, capsys):
    model = tmp_path / "energy.pt"
    torch.jit.script(_Energy()).save(str(model))  # (B, T) -> (B, F, 2) frames
    run_evaluate([str(audio["real"])], [str(audio["music"])], as_json=True, embedding=str(model))
    report = strict_json(capsys.readouterr().out)
    assert report["quality/fad_inf"] is not None and report["quality/kid"] is not None


def test_scale_places_a_continuation_near_real_and_a_loop_near_the_loop(tmp_path: Path) -> None:
    """`--scale` splits the real set in halves and scores references made of it: the song's
    own continuation lands near 0 (real), a loop of it past halfway to 1 (a looped segment)."""
    (_, song), *_ = synthetic_songs(40.0, SR, seed=8)
    cut = 24 * SR
    write_wav(tmp_path / "real.wav", song[:cut], SR)
    write_wav(tmp_path / "continuation.wav", song[cut:], SR)
    looped = song[cut - 500 : cut].repeat(16 * SR // 500 + 1)[: 16 * SR]
    write_wav(tmp_path / "loop.wav", looped, SR)
    position = {}
    for name in ("continuation", "loop"):
        report = judged(
            tmp_path / "real.wav", tmp_path / f"{name}.wav", "--clip-seconds", "3", "--scale"
        )
        scale = {
            k: v for k, v in report.items() if k.startswith("scale/") and k != "scale/position"
        }
        assert scale["scale/real continuation"] < scale["scale/looped segment"]
        position[name] = report["scale/position"]
    assert position["continuation"] < 0.25 and position["loop"] > 0.5, position
