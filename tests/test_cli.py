"""The real `samplegan-tune` command in a subprocess: outputs on disk, and every bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import TINY


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "SAMPLEGAN_CACHE": str(cache)}


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samplegan_tune.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def train(
    env: dict[str, str], config: Path, steps: int, out: Path, *more: str
) -> subprocess.CompletedProcess:
    """`samplegan-tune train --config CONFIG --steps STEPS --out OUT MORE`."""
    return cli(
        env, "train", "--config", str(config), "--steps", str(steps), "--out", str(out), *more
    )


def generate_1s(
    env: dict[str, str], model: Path, out: Path, *more: str
) -> subprocess.CompletedProcess:
    """`samplegan-tune generate MODEL --seconds 1 --out OUT MORE`."""
    return cli(env, "generate", str(model), "--seconds", "1", "--out", str(out), *more)


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "error:" in last
    for word in words:
        assert word in last, last


def write_tone(path: Path, seconds: float, rate: int, channels: int = 1, amp: float = 0.3) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = amp * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    data = np.stack([tone * (1 - 0.1 * c) for c in range(channels)], axis=1)
    sf.write(path, data.astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env, tiny_yaml) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    result = train(env, tiny_yaml, 4, out, "--log-every", "2", "--eval-every", "4")
    assert result.returncode == 0, result.stderr
    assert "step 4/4" in result.stdout and "steps/s" in result.stdout
    return out


def test_train_writes_checkpoint_events_and_config(trained: Path) -> None:
    assert (trained / "checkpoints" / "last.pt").is_file()
    assert list((trained / "tb").glob("events.out.tfevents.*"))
    assert yaml.safe_load((trained / "config.yaml").read_text())["segment"] == TINY["segment"]


def test_generate_writes_a_valid_wav_of_the_asked_length(trained, env, tmp_path) -> None:
    out = tmp_path / "gen.wav"
    result = cli(env, "generate", str(trained), "--seconds", "1.5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) == 24000
    assert np.isfinite(audio).all() and np.sqrt(np.mean(audio**2)) > 1e-3
    again = cli(env, "generate", str(trained), "--seconds", "1.5", "--out", str(out))
    assert_user_error(again, str(out), "--force")
    primed = tmp_path / "primed.wav"
    prime = write_tone(tmp_path / "prime.flac", 0.5, 44100, channels=2)
    last = trained / "checkpoints" / "last.pt"
    result = generate_1s(env, last, primed, "--prime", str(prime), "--include-prime")
    assert result.returncode == 0, result.stderr
    assert len(sf.read(primed)[0]) == 16000 + 8000


def _song_with_fade_out(path: Path, gain: float) -> Path:
    """6 s of a real (float) WAV file whose last 2 s fade out to silence."""
    rate = 16000
    t = np.arange(6 * rate) / rate
    song = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    song[4 * rate :] *= np.linspace(1.0, 0.0, 2 * rate)
    sf.write(str(path), gain * song, rate, subtype="FLOAT")
    return path


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x**2)))


def test_generate_primes_at_an_offset_and_follows_the_primers_level(trained, env, tmp_path):
    loud = _song_with_fade_out(tmp_path / "loud.wav", 1.0)
    quiet = _song_with_fade_out(tmp_path / "quiet.wav", 0.1)  # the same song, 20 dB down

    def generate(prime: Path, name: str, *extra: str) -> np.ndarray:
        out = tmp_path / f"{name}.wav"
        more = ("--prime", str(prime), "--offset", "3", "--include-prime", *extra)
        result = generate_1s(env, trained, out, *more)
        assert result.returncode == 0, result.stderr
        return sf.read(out)[0]

    a, b = generate(loud, "a"), generate(quiet, "b")
    song = sf.read(loud)[0]
    assert np.abs(a[:16000] - song[2 * 16000 : 3 * 16000]).max() < 1e-3, "the 1 s before 3 s"
    assert abs(_rms_db(a[16000:]) - _rms_db(b[16000:]) - 20.0) < 0.5, "level follows primer"
    fixed_a, fixed_b = (
        generate(loud, "fa", "--level-dbfs", "-30"),
        generate(quiet, "fb", "--level-dbfs", "-30"),
    )
    assert abs(_rms_db(fixed_a[16000:]) - _rms_db(fixed_b[16000:])) < 0.5
    assert (
        abs(
            _rms_db(fixed_a[16000:])
            - _rms_db(a[16000:])
            + _rms_db(song[2 * 16000 : 3 * 16000])
            + 30
        )
        < 0.5
    )
    late = generate_1s(env, trained, tmp_path / "x.wav", "--prime", str(loud), "--offset", "7")
    assert_user_error(late, "--offset 7", "6.00 s")
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--level-dbfs", "50"],
        ["--level-dbfs", "inf"],
        ["--level-dbfs", "-500"],
        ["--level-dbfs", "nan"],
        ["--offset", "nan"],
        ["--offset", "inf"],
        ["--seconds", "1e9"],
        ["--seconds", "nan"],
        ["--seconds", "0"],
    ],
)
def test_generate_refuses_values_that_would_write_garbage(trained, env, tmp_path, args) -> None:
    """Levels off the dBFS scale, non-finite offsets and absurd lengths: one line, exit 2, no
    file (they wrote clipped noise, silence or tracebacks, or ran without bound)."""
    seconds = [] if args[0] == "--seconds" else ["--seconds", "1"]
    wav = tmp_path / "x.wav"
    done = cli(env, "generate", str(trained), *seconds, *args, "--out", str(wav))
    assert_user_error(done, args[0], "finite")
    assert not wav.exists()


def test_resume_continues_to_the_new_total(trained, env, tmp_path) -> None:
    import torch

    result = cli(env, "train", "--steps", "6", "--out", str(trained), "--resume")
    assert result.returncode == 0, result.stderr
    state = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6
    refused = cli(env, "train", "--steps", "8", "--out", str(trained))
    assert_user_error(refused, "--resume")


def test_odd_but_valid_inputs_train(env, tiny_yaml, tmp_path) -> None:
    music = tmp_path / "music"
    (music / "deep").mkdir(parents=True)
    write_tone(music / "eight.wav", 1.0, 8000, channels=8)
    write_tone(music / "deep" / "hires.flac", 1.0, 96000, channels=2)
    write_tone(music / "mono.ogg", 1.0, 22050)
    (music / "broken.wav").write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "run"
    result = train(env, tiny_yaml, 2, out, "--data", str(music))
    assert result.returncode == 0, result.stderr
    assert "broken.wav" in result.stderr  # skipped with a warning naming it
    assert "3 file(s)" in result.stdout


def _train_error(env, tiny_yaml, tmp_path, *args: str) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    result = train(env, tiny_yaml, 2, out, *args)
    assert not out.exists(), "a failed command must leave nothing behind"
    return result


def test_bad_data_inputs(env, tiny_yaml, tmp_path) -> None:
    missing = tmp_path / "nope"
    assert_user_error(_train_error(env, tiny_yaml, tmp_path, "--data", str(missing)), str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(_train_error(env, tiny_yaml, tmp_path, "--data", str(empty)), str(empty))
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("la la la")
    assert_user_error(_train_error(env, tiny_yaml, tmp_path, "--data", str(texts)), str(texts))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "bad.flac").write_bytes(b"\x00" * 1000)
    result = _train_error(env, tiny_yaml, tmp_path, "--data", str(corrupt))
    assert_user_error(result, "decodable")
    short = write_tone(tmp_path / "short.wav", 0.01, 16000)
    window = TINY["context"] + TINY["rollout_steps"] * TINY["segment"] + TINY["crossfade"]
    assert_user_error(_train_error(env, tiny_yaml, tmp_path, "--data", str(short)), str(window))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    assert_user_error(_train_error(env, tiny_yaml, tmp_path, "--data", str(silent)), "silent")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "lr_gen=0.1"], ["'lr_gen'"]),
        (["--set", "context=10"], ["context=10", "> segment"]),
        (["--set", "lr_g=-1"], ["lr_g", "-1"]),
        (["--set", "lr_g"], ["--set", "key=value"]),
        (["--steps", "0"], ["--steps"]),
    ],
)
def test_bad_config_inputs(env, tiny_yaml, tmp_path, args: list[str], words: list[str]) -> None:
    assert_user_error(_train_error(env, tiny_yaml, tmp_path, *args), *words)


def test_unwritable_output_and_bad_model(env, tiny_yaml, tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = cli(env, "train", "--config", str(tiny_yaml), "--out", str(blocker / "run"))
    assert_user_error(result, str(blocker))
    result = generate_1s(env, blocker, tmp_path / "o.wav")
    assert_user_error(result, str(blocker))
    assert not (tmp_path / "o.wav").exists()
    result = generate_1s(env, tmp_path / "none.pt", blocker / "o.wav")
    assert_user_error(result, str(blocker))


UNCREATABLE = "/proc/samplegan-nope/out"  # cannot be created even by root


def test_every_writing_verb_refuses_an_uncreatable_path(trained, env, tmp_path) -> None:
    """One line naming the path, exit 2, nothing written (the search variants, which need a
    finished search, are in tests/test_search.py)."""
    cases = [
        ("train", "--steps", "2", "--out", UNCREATABLE),
        ("generate", str(trained), "--seconds", "1", "--out", f"{UNCREATABLE}.wav"),
        ("search", "--space", "smoke", "--storage", UNCREATABLE),
    ]
    for args in cases:
        assert_user_error(cli(env, *args), UNCREATABLE)


def test_a_collapsing_run_stops_and_says_why(env, tiny_yaml, tmp_path) -> None:
    out = tmp_path / "run"
    more = ("--set", "lr_g=1000", "--set", "lr_d=1000", "--set", "lr_ae=1000")
    result = train(env, tiny_yaml, 40, out, *more)
    assert result.returncode == 1
    assert "stopped at step" in result.stdout and "training collapsed (" in result.stdout
    assert "step 40/40" not in result.stdout


def test_a_bad_set_is_blamed_on_set_and_a_bad_file_on_the_file(env, tiny_yaml, tmp_path) -> None:
    result = _train_error(env, tiny_yaml, tmp_path, "--set", "lr_g=-1")
    assert_user_error(result, "--set", "lr_g")
    assert str(tiny_yaml) not in result.stderr  # the file is fine; it was blamed before
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "lr_g": -1}))
    result = train(env, bad, 2, tmp_path / "out", "--set", "lr_d=0.001")
    assert_user_error(result, str(bad), "lr_g")
    assert not (tmp_path / "out").exists()


def test_resuming_a_run_already_past_steps_is_refused(trained, env) -> None:
    before = (trained / "checkpoints" / "last.pt").read_bytes()
    result = cli(env, "train", "--steps", "2", "--out", str(trained), "--resume")
    assert_user_error(result, "--steps 2", "already")  # it exited 0 having done nothing
    assert (trained / "checkpoints" / "last.pt").read_bytes() == before


def test_train_into_a_folder_of_other_files_is_refused(env, tiny_yaml, tmp_path) -> None:
    """--out holding a user's files (not a run) is refused, with or without --force: train
    wrote its config.yaml over theirs and exited 0."""
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "config.yaml").write_text("my notes\n")
    (mine / "thesis.txt").write_text("chapter 1\n")
    for more in ((), ("--force",)):
        assert_user_error(train(env, tiny_yaml, 1, mine, *more), str(mine), "thesis.txt")
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "thesis.txt"]
    assert (mine / "config.yaml").read_text() == "my notes\n"


def test_train_force_replaces_the_old_runs_curves(env, tiny_yaml, tmp_path) -> None:
    out = tmp_path / "run"
    for more in ((), ("--force",)):
        assert train(env, tiny_yaml, 2, out, "--log-every", "1", *more).returncode == 0
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1  # not two runs' curves


def test_generate_writes_only_wav(trained, env, tmp_path) -> None:
    mp3 = tmp_path / "x.mp3"
    result = generate_1s(env, trained, mp3)
    assert_user_error(result, str(mp3), "WAV")  # it wrote WAV data under an .mp3 name
    assert not mp3.exists()
