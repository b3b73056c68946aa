"""Continuity of a continuation with its primer, on signals made here: chords, click trains."""

from __future__ import annotations

import math

import pytest
import torch

from samplegan_tune.judge import continuity as c

SR = 16000
C_MAJOR = ([60, 64, 67], [65, 69, 72], [67, 71, 74], [57, 60, 64])  # C, F, G, Am (MIDI)
C_MAJOR_LATER = ([65, 69, 72], [62, 65, 69], [67, 71, 74], [60, 64, 67])  # F, Dm, G, C


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def chords(progression: tuple[list[int], ...], seconds: float, shift: int = 0) -> torch.Tensor:
    """(T,) the progression looped, 0.5 s a chord, notes of 4 decaying harmonics."""
    t = torch.arange(int(0.5 * SR)) / SR
    decay = torch.exp(-3.0 * t)
    bars = []
    for notes in progression:
        chord = torch.zeros_like(t)
        for note in notes:
            f0 = 440.0 * 2.0 ** ((note + shift - 69) / 12)
            chord += sum(torch.sin(2 * math.pi * h * f0 * t) / h for h in range(1, 5))
        bars.append(0.1 * chord * decay)
    one = torch.cat(bars)
    return one.repeat(math.ceil(seconds * SR / len(one)))[: int(seconds * SR)]


def clicks(bpm: float, seconds: float, seed: int = 0) -> torch.Tensor:
    """(T,) a 4/4 pattern of 10 ms noise clicks at `bpm`, the first beat of a bar louder."""
    rng = torch.Generator().manual_seed(seed)
    x = 0.001 * torch.randn(int(seconds * SR), generator=rng)
    burst = torch.randn(int(0.01 * SR), generator=rng) * torch.linspace(1, 0, int(0.01 * SR))
    beat = 0
    while (start := round(beat * 60.0 / bpm * SR)) + len(burst) <= len(x):
        x[start : start + len(burst)] += (0.8 if beat % 4 == 0 else 0.3) * burst
        beat += 1
    return x


def test_same_key_is_nearer_than_three_semitones_up() -> None:
    primer = chords(C_MAJOR, 2.0)[None]
    same = chords(C_MAJOR_LATER, 4.0)[None]
    up = chords(C_MAJOR_LATER, 4.0, shift=3)[None]
    near = c.continuity(primer, same, SR)["key"]
    far = c.continuity(primer, up, SR)["key"]
    assert near.item() < 0.3 < 0.7 < far.item()


def test_chroma_finds_the_pitch_class_of_a_tone() -> None:
    t = torch.arange(2 * SR) / SR
    tones = torch.stack([torch.sin(2 * math.pi * 440.0 * t), torch.sin(2 * math.pi * 261.63 * t)])
    profile = c.chroma(tones, SR)
    assert profile.shape == (2, 12)
    assert torch.allclose(profile.sum(1), torch.ones(2))
    assert profile.argmax(1).tolist() == [9, 0]  # A, C


def test_same_tempo_is_nearer_than_143_bpm() -> None:
    primer = clicks(120.0, 3.0)[None].repeat(2, 1)
    continued = torch.stack([clicks(120.0, 4.0, seed=1), clicks(143.0, 4.0, seed=1)])
    distance = c.continuity(primer, continued, SR)["tempo"]
    assert distance[0].item() < 0.05
    assert distance[1].item() == pytest.approx(math.log2(143.0 / 120.0), abs=0.05)
    change = c.tempo_change(primer, continued, SR)
    assert change[1].item() > 0  # faster: positive


def test_tempo_and_onset_rate_of_a_click_train() -> None:
    x = clicks(120.0, 4.0)[None]
    assert c.tempo(x, SR).item() == pytest.approx(120.0, rel=0.03)
    assert c.onset_rate(x, SR).item() == pytest.approx(2.0, abs=0.3)


def test_the_same_signal_continued_is_near_zero() -> None:
    music = chords(C_MAJOR, 6.0) + clicks(120.0, 6.0)
    for primer, continued in [
        (music[None], music[None]),
        (music[None, : SR * 2], music[None, SR * 2 :]),
    ]:
        d = c.continuity(primer, continued, SR)
        assert set(d) == set(c.DISTANCES)
        assert d["key"].item() < 0.05
        assert d["tempo"].item() < 0.03
        assert d["timbre"].item() < 1.0
        assert d["level"].item() < 0.5


def test_level_is_the_db_difference_and_nothing_else_sees_gain() -> None:
    x = (chords(C_MAJOR, 3.0) + clicks(100.0, 3.0))[None]
    d = c.continuity(x, 0.5 * x, SR)
    assert d["level"].item() == pytest.approx(20 * math.log10(2.0), abs=1e-3)
    assert d["key"].item() < 1e-4 and d["tempo"].item() < 1e-6 and d["timbre"].item() < 1e-3


def test_silence_gives_finite_values() -> None:
    silence = torch.zeros(2, 2 * SR)
    music = torch.stack([chords(C_MAJOR, 2.0), clicks(120.0, 2.0)])
    for primers, continued in [(silence, silence), (music, silence), (silence, music)]:
        d = c.continuity(primers, continued, SR)
        assert all(torch.isfinite(v).all() and v.shape == (2,) for v in d.values())
    for describe in (c.chroma, c.tempo, c.onset_rate, c.spectral_envelope, c.periodicity):
        assert torch.isfinite(describe(silence, SR)).all()
    assert c.onset_rate(silence, SR).eq(0).all()


def test_mismatched_or_short_inputs_raise() -> None:
    with pytest.raises(ValueError):
        c.continuity(torch.zeros(2, SR), torch.zeros(3, SR), SR)
    with pytest.raises(ValueError):
        c.continuity(torch.zeros(SR), torch.zeros(SR), SR)
    with pytest.raises(ValueError):
        c.continuity(torch.zeros(1, 100), torch.zeros(1, SR), SR)
