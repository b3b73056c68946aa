"""audio.py on real files written in tmp_path: formats, rates, channel counts, errors."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from samplegan_tune.audio.sound import (
    AudioDecodeError,
    find_audio_files,
    load_audio,
    load_many,
    normalise_loudness,
    rms_dbfs,
    write_wav,
)
from samplegan_tune.core.errors import UserInputError

RATE = 16000


def write_tone(
    path: Path, rate: int, channels: int = 1, seconds: float = 1.0, freq: float = 440.0, **kw
) -> Path:
    """A sine at `freq` in every channel, amplitude 0.5; `kw` goes to soundfile.write."""
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * freq * t)
    sf.write(str(path), np.tile(tone[:, None], (1, channels)), rate, **kw)
    return path


def peak_hz(x: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(x * torch.hann_window(x.numel()))
    return float(spectrum.abs().argmax()) * rate / x.numel()


@pytest.mark.parametrize(
    ("suffix", "rate", "channels"),
    [
        ("wav", 8000, 1),
        ("wav", 96000, 8),
        ("flac", 44100, 2),
        ("flac", 96000, 8),
        ("ogg", 44100, 8),
        ("ogg", 96000, 1),
        ("mp3", 44100, 2),
        ("mp3", 8000, 1),
        ("aiff", 44100, 2),
    ],
)
def test_load_audio_mono_resampled_keeps_pitch(
    tmp_path: Path, suffix: str, rate: int, channels: int
) -> None:
    path = write_tone(tmp_path / f"tone.{suffix}", rate, channels)
    x = load_audio(path, RATE)
    assert x.dtype == torch.float32 and x.dim() == 1
    assert abs(x.numel() - RATE) <= 1
    assert abs(peak_hz(x, RATE) - 440.0) <= 2.0
    assert float(x.abs().max()) == pytest.approx(0.5, abs=0.06)  # lossy codecs wobble a little


def test_mixdown_is_the_mean_of_all_channels(tmp_path: Path) -> None:
    t = np.arange(RATE) / RATE
    data = np.zeros((RATE, 8))
    data[:, 3] = 0.8 * np.sin(2 * np.pi * 440 * t)  # one loud channel of eight
    sf.write(str(tmp_path / "eight.wav"), data, RATE, subtype="FLOAT")
    x = load_audio(tmp_path / "eight.wav", RATE)
    assert float(x.abs().max()) == pytest.approx(0.1, abs=1e-4)


def test_explicit_file_with_any_suffix_is_decoded(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "take.dat", 22050, format="WAV")
    assert find_audio_files([path]) == [path]
    assert abs(load_audio(path, RATE).numel() - RATE) <= 1


def test_find_audio_files_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    for rel in ("b/deep/z.flac", "b/one.WAV", "a/two.ogg", "top.mp3"):
        write_tone(tmp_path / rel, 8000, seconds=0.1, format=_format_of(rel))
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "a" / "._two.ogg").write_bytes(b"\0\1macOS resource fork")  # hidden: skipped
    found = find_audio_files([tmp_path])
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["a/two.ogg", "b/deep/z.flac", "b/one.WAV", "top.mp3"]
    assert find_audio_files([tmp_path]) == found  # deterministic


def test_find_audio_files_several_paths_keep_order_without_duplicates(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    inner = write_tone(tmp_path / "dir" / "x.wav", 8000, seconds=0.1)
    single = write_tone(tmp_path / "single.flac", 8000, seconds=0.1)
    assert find_audio_files([single, tmp_path / "dir", str(inner)]) == [single, inner]


def test_find_audio_files_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="missing.wav: no such file"):
        find_audio_files([tmp_path / "missing.wav"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UserInputError, match="empty: folder is empty"):
        find_audio_files([tmp_path / "empty"])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("hi")
    with pytest.raises(UserInputError, match=r"docs: no audio files .*\.wav"):
        find_audio_files([tmp_path / "docs"])
    with pytest.raises(UserInputError, match="no audio paths"):
        find_audio_files([])
    with pytest.raises(UserInputError, match="empty string"):
        find_audio_files([""])


def test_corrupt_file_raises_decode_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEthis is not audio")
    with pytest.raises(AudioDecodeError, match="bad.wav: cannot decode"):
        load_audio(bad, RATE)
    assert issubclass(AudioDecodeError, UserInputError)


def test_load_many_skips_corrupt_files_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = [write_tone(tmp_path / f"g{i}.wav", 8000, seconds=0.5) for i in range(2)]
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(bytes(range(256)) * 8)
    with caplog.at_level(logging.WARNING, logger="samplegan_tune"):
        loaded = load_many([good[0], bad, good[1]], RATE)
    assert [name for name, _ in loaded] == [str(good[0]), str(good[1])]
    assert "broken.mp3" in caplog.text
    with pytest.raises(UserInputError, match="no decodable audio.*broken.mp3"):
        load_many([bad], RATE)


def test_rms_dbfs_of_sine_silence_and_batches() -> None:
    sine = torch.sin(torch.linspace(0, 200 * math.pi, 16000))
    assert float(rms_dbfs(sine)) == pytest.approx(-3.01, abs=0.02)
    assert float(rms_dbfs(torch.zeros(100))) == -120.0
    assert rms_dbfs(torch.stack([sine, 0.1 * sine])).shape == (2,)


def test_normalise_loudness_hits_target_and_never_clips() -> None:
    sine = 0.01 * torch.sin(torch.linspace(0, 200 * math.pi, 16000))
    assert float(rms_dbfs(normalise_loudness(sine, -20.0))) == pytest.approx(-20.0, abs=0.01)
    clicks = torch.zeros(16000)
    clicks[::4000] = 0.2  # RMS -40 dBFS; reaching -3 dBFS would need peaks far above 1
    loud = normalise_loudness(clicks, -3.0)
    assert float(loud.abs().max()) <= 0.999 + 1e-6
    assert torch.equal(normalise_loudness(torch.zeros(10), -20.0), torch.zeros(10))
    rows = normalise_loudness(torch.stack([sine, 10 * sine]), -30.0)
    assert torch.allclose(rms_dbfs(rows), torch.tensor([-30.0, -30.0]), atol=0.01)


def test_write_wav_is_16_bit_pcm_clamped_and_atomic(tmp_path: Path) -> None:
    audio = torch.tensor([0.0, 0.5, -0.5, 1.7, -3.0, float("nan")])
    out = tmp_path / "sub" / "clip.out"  # a non-.wav suffix is still written as WAV
    write_wav(out, audio, 22050)
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        22050,
        1,
    )
    back, _ = sf.read(str(out), dtype="float32")
    assert np.allclose(back, [0.0, 0.5, -0.5, 1.0, -1.0, 0.0], atol=1 / 32000)
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.out"]  # no temp file left
    with pytest.raises(ValueError, match="1-D"):
        write_wav(tmp_path / "x.wav", torch.zeros(2, 5), RATE)


def _format_of(rel: str) -> str:
    return {"flac": "FLAC", "wav": "WAV", "ogg": "OGG", "mp3": "MP3"}[rel.rsplit(".", 1)[1].lower()]
