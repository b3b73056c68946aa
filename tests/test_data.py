"""data.py: the synthetic corpus, corpus preparation and its cache, splits, window sampling."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from samplegan_tune.audio.corpus import (
    Corpus,
    WindowSampler,
    prepare_corpus,
    split_corpus,
    synthetic_songs,
)
from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.core.errors import UserInputError

RATE = 16000


def flatness(x: torch.Tensor, n_fft: int = 1024) -> float:
    """Mean spectral flatness of frames that carry sound (white noise ~0.56, tones ~0)."""
    frames = x.unfold(0, n_fft, n_fft // 2) * torch.hann_window(n_fft)
    power = torch.fft.rfft(frames).abs().pow(2)[:, 1:] + 1e-12
    frames_flatness = torch.exp(power.log().mean(1)) / power.mean(1)
    loud = frames.pow(2).mean(1) > 1e-6
    return float(frames_flatness[loud].mean())


@pytest.fixture(scope="module")
def default_songs() -> list[tuple[str, torch.Tensor]]:
    return synthetic_songs()  # the default corpus, built once for this module (~2-3 s)


def test_default_synthetic_corpus_is_six_songs_at_minus_20_dbfs(default_songs) -> None:
    assert len(default_songs) == 6
    assert sum(a.numel() for _, a in default_songs) == 180 * RATE
    assert len({name for name, _ in default_songs}) == 6
    for _, audio in default_songs:
        assert audio.dtype == torch.float32 and audio.dim() == 1
        assert float(rms_dbfs(audio)) == pytest.approx(-20.0, abs=0.5)
        assert float(audio.abs().max()) <= 0.999


def test_synthetic_corpus_is_tonal_and_rhythmic(default_songs) -> None:
    noise = torch.randn(30 * RATE, generator=torch.Generator().manual_seed(0))
    assert flatness(noise) > 0.5
    for _, audio in default_songs:
        assert flatness(audio) < 0.05  # music, not noise
        # notes and drum hits make the level move; a drone or stationary noise would not
        level = rms_dbfs(audio.unfold(0, 800, 800))  # 50 ms frames
        assert float(level.std()) > 1.5


def test_synthetic_is_deterministic_and_seed_sensitive() -> None:
    first = synthetic_songs(20.0, RATE, seed=7)
    again = synthetic_songs(20.0, RATE, seed=7)
    other = synthetic_songs(20.0, RATE, seed=8)
    assert len(first) == 1 and first[0][1].numel() == 20 * RATE
    assert first[0][0] == again[0][0] and torch.equal(first[0][1], again[0][1])
    assert not torch.allclose(first[0][1], other[0][1], atol=1e-3)


def test_synthetic_durations_and_other_rates() -> None:
    songs = synthetic_songs(65.0, 8000, seed=1)
    assert len(songs) == 2 and sum(a.numel() for _, a in songs) == 65 * 8000
    assert abs(songs[0][1].numel() - songs[1][1].numel()) <= 1
    assert float(synthetic_songs(3.0, 44100)[0][1].abs().max()) <= 0.999
    with pytest.raises(UserInputError, match="synthetic"):
        synthetic_songs(0.0)


def write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_24" if path.suffix == ".flac" else "FLOAT"  # FLAC has no float samples
    sf.write(str(path), audio, rate, subtype=subtype)
    return path


def tone(seconds: float, level: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return level * np.sin(2 * np.pi * 330 * t)


def test_prepare_corpus_from_folder_normalises_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    songs = tmp_path / "songs"
    write(songs / "a.wav", tone(1.0, 0.05))
    write(songs / "deep" / "b.flac", tone(0.5, 0.5, 44100), 44100)
    reads = []
    real_read = sf.read
    monkeypatch.setattr(sf, "read", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    corpus = prepare_corpus(str(songs), RATE, cache_dir=tmp_path / "cache")
    assert len(reads) == 2
    assert corpus.names == (str(songs / "a.wav"), str(songs / "deep" / "b.flac"))
    assert corpus.lengths.tolist() == [RATE, RATE // 2]
    assert corpus.starts.tolist() == [0, RATE]
    assert corpus.seconds == pytest.approx(1.5)
    assert torch.allclose(rms_dbfs(corpus.file(1)), torch.tensor(-20.0), atol=0.05)
    again = prepare_corpus([str(songs)], RATE, cache_dir=tmp_path / "cache")
    assert len(reads) == 2  # served from the cache: nothing decoded
    assert torch.equal(again.audio, corpus.audio) and again.names == corpus.names
    os.utime(songs / "a.wav", ns=(0, 10**18))  # an edited file is decoded again
    prepare_corpus(str(songs), RATE, cache_dir=tmp_path / "cache")
    assert len(reads) == 4
    raw = prepare_corpus(str(songs), RATE, normalise_dbfs=None, cache_dir=tmp_path / "cache")
    assert float(raw.file(0).abs().max()) == pytest.approx(0.05, abs=1e-3)


def test_cache_dir_comes_from_env_and_synthetic_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMPLEGAN_CACHE", str(tmp_path / "env-cache"))
    corpus = prepare_corpus("synthetic", 8000, synthetic_seconds=4.0, synthetic_seed=3)
    cached = list((tmp_path / "env-cache").glob("corpus-*.pt"))
    assert len(cached) == 1
    assert torch.equal(corpus.audio, synthetic_songs(4.0, 8000, seed=3)[0][1])
    again = prepare_corpus(["synthetic"], 8000, synthetic_seconds=4.0, synthetic_seed=3)
    assert torch.equal(again.audio, corpus.audio)
    cached[0].write_bytes(b"garbage")  # a damaged cache is rebuilt, not fatal
    assert torch.equal(
        prepare_corpus("synthetic", 8000, synthetic_seconds=4.0, synthetic_seed=3).audio,
        corpus.audio,
    )


def test_corrupt_file_among_good_ones_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "d" / "good.wav", tone(0.5))
    (tmp_path / "d" / "corrupt.flac").write_bytes(b"fLaC" + bytes(300))
    with caplog.at_level(logging.WARNING, logger="samplegan_tune"):
        corpus = prepare_corpus(str(tmp_path / "d"), cache_dir=tmp_path / "c")
    assert corpus.names == (str(tmp_path / "d" / "good.wav"),)
    assert "corrupt.flac" in caplog.text
    with pytest.raises(UserInputError, match="no decodable audio"):
        prepare_corpus(str(tmp_path / "d" / "corrupt.flac"), cache_dir=tmp_path / "c")


def test_short_files_are_dropped_and_all_short_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    short = write(tmp_path / "short.wav", tone(0.25))
    long = write(tmp_path / "long.wav", tone(2.0))
    with caplog.at_level(logging.WARNING, logger="samplegan_tune"):
        corpus = prepare_corpus([str(short), str(long)], cache_dir=tmp_path / "c", min_samples=RATE)
    assert corpus.names == (str(long),)
    assert "short.wav" in caplog.text
    with pytest.raises(UserInputError, match=r"16000 samples \(1\.000 s at 16000 Hz\)"):
        prepare_corpus(str(short), cache_dir=tmp_path / "c", min_samples=RATE)


def test_silent_corpus_is_an_error_checked_before_normalising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "quiet" / "zeros.wav", np.zeros(RATE))
    hiss = 1e-5 * np.random.default_rng(0).standard_normal(RATE)  # -100 dBFS
    write(tmp_path / "quiet" / "hiss.wav", hiss)
    with pytest.raises(UserInputError, match="quiet: all audio is silent"):
        prepare_corpus(str(tmp_path / "quiet"), cache_dir=tmp_path / "c")
    write(tmp_path / "quiet" / "music.wav", tone(1.0))
    with caplog.at_level(logging.WARNING, logger="samplegan_tune"):
        corpus = prepare_corpus(str(tmp_path / "quiet"), cache_dir=tmp_path / "c")
    assert corpus.names == (str(tmp_path / "quiet" / "music.wav"),)
    assert "hiss.wav" in caplog.text and "zeros.wav" in caplog.text


def test_bad_paths_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="nowhere"):
        prepare_corpus(str(tmp_path / "nowhere"), cache_dir=tmp_path / "c")
    with pytest.raises(UserInputError, match="sample_rate"):
        prepare_corpus("synthetic", sample_rate=0, cache_dir=tmp_path / "c")


def constant_corpus(lengths: list[int]) -> Corpus:
    """File i holds the constant value i + 1, so a window's file is visible in its values."""
    items = [(f"f{i}", torch.full((n,), float(i + 1))) for i, n in enumerate(lengths)]
    return Corpus.from_items(items, RATE)


def test_split_by_file_holds_out_the_last_files() -> None:
    corpus = constant_corpus([1000] * 10)
    train, held = split_corpus(corpus, 0.1)
    assert train.names == tuple(f"f{i}" for i in range(9)) and held.names == ("f9",)
    assert torch.equal(held.audio, torch.full((1000,), 10.0))
    train, held = split_corpus(corpus, 0.3)
    assert (train.num_files, held.num_files) == (7, 3)
    train, held = split_corpus(constant_corpus([5000, 100]), 0.5)  # at least one train file
    assert (train.names, held.names) == (("f0",), ("f1",))
    train, held = split_corpus(constant_corpus([100, 5000]), 0.01)  # at least one held out
    assert (train.names, held.names) == (("f0",), ("f1",))
    train, held = split_corpus(constant_corpus([500, 50, 500, 500]), 0.3, min_samples=100)
    assert (train.names, held.names) == (("f0", "f2"), ("f3",))  # the too-short file is dropped


def test_split_by_time_for_a_single_file() -> None:
    corpus = Corpus.from_items([("only", torch.arange(10000.0))], RATE)
    train, held = split_corpus(corpus, 0.1)
    assert (train.audio.numel(), held.audio.numel()) == (9000, 1000)
    assert torch.equal(torch.cat([train.audio, held.audio]), corpus.audio)
    train, held = split_corpus(corpus, 0.1, min_samples=2000)
    assert (train.audio.numel(), held.audio.numel()) == (8000, 2000)
    train, held = split_corpus(corpus, 0.9, min_samples=3000)
    assert (train.audio.numel(), held.audio.numel()) == (7000, 3000)
    with pytest.raises(UserInputError, match="6000 samples"):
        split_corpus(corpus, 0.1, min_samples=6000)
    with pytest.raises(UserInputError, match="holdout_fraction"):
        split_corpus(corpus, 1.0)


def test_window_sampler_windows_lie_inside_one_file() -> None:
    lengths = [50, 10, 200, 3, 120]
    sampler = WindowSampler(constant_corpus(lengths))
    batch = sampler.sample(4000, 8, torch.Generator().manual_seed(0))
    assert batch.shape == (4000, 8) and batch.dtype == torch.float32
    assert torch.equal(batch.amax(1), batch.amin(1))  # never straddles two files
    counts = torch.bincount(batch[:, 0].long(), minlength=6)[1:].double()
    valid = torch.tensor([max(n - 8 + 1, 0) for n in lengths], dtype=torch.float64)
    assert counts[3] == 0  # the 3-sample file cannot hold a window
    assert torch.allclose(counts / 4000, valid / valid.sum(), atol=0.03)  # uniform over starts


def test_window_sampler_reaches_every_start_and_is_contiguous() -> None:
    corpus = Corpus.from_items(
        [("a", torch.arange(0.0, 20.0)), ("b", torch.arange(100.0, 110.0))], RATE
    )
    batch = WindowSampler(corpus).sample(2000, 10, torch.Generator().manual_seed(1))
    assert torch.equal(batch.diff(dim=1), torch.ones(2000, 9))  # consecutive samples
    assert set(batch[:, 0].tolist()) == set(range(11)) | {100.0}  # file a: 11 starts, b: 1


def test_window_sampler_determinism_and_errors() -> None:
    sampler = WindowSampler(constant_corpus([300, 400]), device="cpu")
    one = sampler.sample(16, 32, torch.Generator().manual_seed(5))
    two = sampler.sample(16, 32, torch.Generator().manual_seed(5))
    three = sampler.sample(16, 32, torch.Generator().manual_seed(6))
    assert torch.equal(one, two) and not torch.equal(one, three)
    assert torch.equal(sampler.fixed_windows(8, 64, seed=0), sampler.fixed_windows(8, 64, seed=0))
    assert sampler.fixed_windows(8, 64, seed=0).shape == (8, 64)
    with pytest.raises(UserInputError, match="401 samples"):
        sampler.sample(4, 401, torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_window_sampler_on_cuda_with_cpu_generator() -> None:
    sampler = WindowSampler(constant_corpus([300, 400]), device="cuda")
    batch = sampler.sample(64, 32, torch.Generator().manual_seed(0))
    assert batch.device.type == "cuda"
    assert torch.equal(
        batch.cpu(),
        WindowSampler(constant_corpus([300, 400])).sample(64, 32, torch.Generator().manual_seed(0)),
    )
