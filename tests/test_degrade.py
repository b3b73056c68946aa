"""degrade.py on synthetic audio: shapes, determinism, and the measured property of each case."""

from __future__ import annotations

import math

import pytest
import torch

from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.judge import degrade as d

RATE = 16000


@pytest.fixture(scope="module")
def music() -> tuple[torch.Tensor, torch.Tensor]:
    """Primers (2, 1 s) and their true continuations (2, 1 s) from one synthetic song."""
    song = synthetic_songs(4.0, RATE, seed=3)[0][1]
    windows = song[: 4 * RATE].reshape(2, 2 * RATE)
    return windows[:, :RATE].contiguous(), windows[:, RATE:].contiguous()


def white(batch: int = 2, length: int = RATE, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


def sine(freq: float, length: int = RATE) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * freq * torch.arange(length) / RATE)[None]


def frame_db(x: torch.Tensor, ms: float) -> torch.Tensor:
    """(B, T) -> (B, frames): each non-overlapping frame's RMS in dBFS."""
    size = round(ms * RATE / 1000)
    return rms_dbfs(x[:, : x.shape[1] // size * size].reshape(x.shape[0], -1, size))


EXPECTED = [  # (name, family, strength) in graded_cases' order
    ("truth", "truth", 0.0),
    ("noise 20 dB", "noise", -20.0),
    ("noise 10 dB", "noise", -10.0),
    ("noise 0 dB", "noise", 0.0),
    ("low-pass 4 kHz", "low-pass", -4000.0),
    ("low-pass 2 kHz", "low-pass", -2000.0),
    ("low-pass 1 kHz", "low-pass", -1000.0),
    ("grains 200 ms", "grains", -200.0),
    ("grains 50 ms", "grains", -50.0),
    ("grains 10 ms", "grains", -10.0),
    ("speed ×1.19", "speed", 3.0),
    ("speed ×0.84", "speed", 3.0),
    ("gate 40–120 ms", "gate", 0.5),
    ("clip 0.5 × peak", "clip", 6.0206),
    ("clip 0.25 × peak", "clip", 12.0412),
    ("clip 0.1 × peak", "clip", 20.0),
    ("quantise 8 bit", "quantise", -8.0),
    ("quantise 6 bit", "quantise", -6.0),
    ("quantise 4 bit", "quantise", -4.0),
    ("loop 500 samples", "loop", 32.0),
    ("loop 4096 samples", "loop", RATE / 4096),
    ("loop 1 s", "loop", 1.0),
    ("repeated last second", "repeat", 1.0),
    ("static", "static", 0.0),
    ("silence −80 dBFS", "silence", 80.0),
    ("drone", "drone", 0.0),
]


def test_graded_cases_order_shapes_and_monotone_strengths(music) -> None:
    primer, truth = music
    cases = d.graded_cases(truth, primer, RATE, seed=0)
    got = [(c.name, c.family, c.strength) for c in cases]
    assert [g[:2] for g in got] == [e[:2] for e in EXPECTED]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in EXPECTED], abs=1e-3)
    for case in cases:
        assert case.clips.shape == truth.shape, case.name
        assert case.clips.dtype == truth.dtype, case.name
        assert torch.isfinite(case.clips).all(), case.name
    assert torch.equal(cases[0].clips, truth)
    for family in {c.family for c in cases}:
        strengths = [c.strength for c in cases if c.family == family]
        ups, downs = sorted(strengths), sorted(strengths, reverse=True)
        assert strengths in (ups, downs), family  # monotone within each family
    again = d.graded_cases(truth, primer, RATE, seed=0)
    assert all(torch.equal(a.clips, b.clips) for a, b in zip(cases, again, strict=True))


def test_graded_cases_rejects_a_short_primer(music) -> None:
    primer, truth = music
    with pytest.raises(ValueError, match="primer"):
        d.graded_cases(truth, primer[:, : RATE // 2], RATE)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        d.add_noise(truth[0], 10.0)


RANDOM = {
    "add_noise": lambda x, s: d.add_noise(x, 10.0, seed=s),
    "shuffle_grains": lambda x, s: d.shuffle_grains(x, 50.0, RATE, seed=s),
    "gate": lambda x, s: d.gate(x, RATE, seed=s),
    "static": lambda x, s: d.static(x, seed=s),
    "silence": lambda x, s: d.silence(x, seed=s),
    "drone": lambda x, s: d.drone(x, RATE, seed=s),
}


@pytest.mark.parametrize("name", RANDOM)
def test_random_cases_follow_the_seed(music, name: str) -> None:
    _, truth = music
    make = RANDOM[name]
    state = torch.random.get_rng_state()
    first = make(truth, 1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is not used
    assert torch.equal(first, make(truth, 1))
    assert not torch.equal(first, make(truth, 2))


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 0.0, -5.0])
def test_add_noise_measured_snr(music, snr_db: float) -> None:
    _, truth = music
    noise = d.add_noise(truth, snr_db, seed=4) - truth
    measured = 10 * torch.log10(truth.pow(2).mean(1) / noise.pow(2).mean(1))
    assert measured.tolist() == pytest.approx([snr_db] * 2, abs=0.5)


@pytest.mark.parametrize("cutoff", [4000.0, 2000.0, 1000.0])
def test_low_pass_leaves_under_1_percent_above_the_cutoff(cutoff: float) -> None:
    x = white()
    y = d.low_pass(x, cutoff, RATE)
    power = torch.fft.rfft(y).abs().pow(2)
    freqs = torch.fft.rfftfreq(y.shape[1], 1 / RATE)
    assert float(power[:, freqs > cutoff].sum() / power.sum()) < 0.01
    passband = freqs < (1 - d.TAPER) * cutoff  # and the passband is kept
    before = torch.fft.rfft(x).abs().pow(2)[:, passband].sum()
    assert float(power[:, passband].sum() / before) == pytest.approx(1.0, abs=0.02)
    assert torch.equal(d.low_pass(x, RATE / 2, RATE), x)


def test_shuffle_grains_without_crossfade_permutes_the_grains() -> None:
    x = white(length=RATE + 37)  # 37 leftover samples after the 10 ms grains
    y = d.shuffle_grains(x, 10.0, RATE, seed=5, crossfade_ms=0.0)
    assert torch.equal(y.sort(dim=1).values, x.sort(dim=1).values)
    grains = x[:, :RATE].reshape(2, -1, 160)
    shuffled = y[:, :RATE].reshape(2, -1, 160)
    for b in range(2):
        assert sorted(map(tuple, grains[b].tolist())) == sorted(map(tuple, shuffled[b].tolist()))
        assert not torch.equal(grains[b], shuffled[b])  # the order changed
    assert torch.equal(y[:, RATE:], x[:, RATE:])  # the leftover stays at the end


def test_shuffle_grains_with_crossfade_keeps_each_grain_between_joins() -> None:
    x = white(length=RATE)
    grain, fade = 800, 80  # 50 ms grains, 5 ms crossfades
    y = d.shuffle_grains(x, 50.0, RATE, seed=6)
    bodies = x.reshape(2, -1, grain)[..., fade:]  # (B, 20, 720): what no crossfade touches
    out = y.reshape(2, -1, grain)[..., fade:]
    for b in range(2):
        match = (out[b][:, None] == bodies[b][None]).all(dim=-1)  # (out grain, source grain)
        assert match.sum(dim=1).tolist() == [1] * 20
        order = match.float().argmax(dim=1)
        assert sorted(order.tolist()) == list(range(20)) and order.tolist() != list(range(20))
    assert float(rms_dbfs(y).sub(rms_dbfs(x)).abs().max()) < 1.0  # joins barely dip


def peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x[0] * torch.hann_window(x.shape[1])).abs()
    return float(spectrum.argmax()) * RATE / x.shape[1]


@pytest.mark.parametrize(("factor", "hz"), [(2 ** (3 / 12), 523.25), (2 ** (-3 / 12), 369.99)])
def test_change_speed_moves_the_pitch(factor: float, hz: float) -> None:
    y = d.change_speed(sine(440.0), factor, RATE)
    assert y.shape == (1, RATE)
    assert peak_hz(y) == pytest.approx(hz, abs=2.0)
    assert float(rms_dbfs(y[:, 100:-100])) == pytest.approx(float(rms_dbfs(sine(440.0))), abs=0.2)
    assert d.change_speed(white(), factor, RATE, length=5000).shape == (2, 5000)


def test_gate_silences_about_half_the_frames(music) -> None:
    _, truth = music
    y = d.gate(truth, RATE, seed=7)
    muted = frame_db(y, 10.0) < frame_db(truth, 10.0) - 40.0
    assert 0.3 < float(muted.float().mean()) < 0.65
    sounding = torch.isclose(y, truth, rtol=1e-5, atol=0.0).float().mean()  # fully open
    assert 0.3 < float(sounding) < 0.65


def test_clip_caps_the_peak(music) -> None:
    _, truth = music
    peak = truth.abs().amax(dim=1)
    raw = d.clip(truth, 0.25, keep_level=False)
    assert torch.allclose(raw.abs().amax(dim=1), 0.25 * peak)
    y = d.clip(truth, 0.25)
    assert torch.allclose(rms_dbfs(y), rms_dbfs(truth), atol=0.01)
    assert (y.abs().amax(dim=1) <= peak + 1e-6).all()
    flat = (y.abs() >= y.abs().amax(dim=1, keepdim=True) - 1e-6).float().mean()
    assert float(flat) > 0.01  # many samples sit on the clipping level


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_quantise_leaves_at_most_2_to_the_bits_values(music, bits: int) -> None:
    _, truth = music
    x = torch.cat([truth, white()]) * 4  # some samples beyond full scale
    y = d.quantise(x, bits)
    assert y.unique().numel() <= 2**bits
    inside = x.abs() < 1 - 2.0 ** (1 - bits)
    assert float((y - x)[inside].abs().max()) <= 2.0**-bits + 1e-6


def test_loop_is_exactly_periodic(music) -> None:
    primer, _ = music
    for period in (500, 4096, RATE):
        y = d.loop(primer, period, 3 * RATE + 7)
        assert y.shape == (2, 3 * RATE + 7)
        assert torch.equal(y[:, period:], y[:, :-period])
        assert torch.equal(y[:, :period], primer[:, -period:])
    assert torch.equal(d.repeat_last_second(primer, RATE, RATE), d.loop(primer, RATE, RATE))
    with pytest.raises(ValueError, match="period"):
        d.loop(primer, RATE + 1, RATE)


def test_drone_has_no_onsets_and_the_clip_level(music) -> None:
    _, truth = music
    y = d.drone(truth, RATE, seed=8)
    assert torch.allclose(rms_dbfs(y), rms_dbfs(truth), atol=0.05)
    frames = frame_db(y, 100.0)
    assert float((frames.amax(1) - frames.amin(1)).max()) < 2.5
    assert float(frames.diff(dim=1).max()) < 1.0  # no frame jumps up: no onset
    music_frames = frame_db(truth, 100.0)  # while the music's frames do
    assert float(music_frames.diff(dim=1).max()) > 3.0


def test_static_and_silence_levels(music) -> None:
    _, truth = music
    assert torch.allclose(rms_dbfs(d.static(truth)), rms_dbfs(truth), atol=0.01)
    assert torch.allclose(rms_dbfs(d.silence(truth)), torch.full((2,), -80.0), atol=0.01)
