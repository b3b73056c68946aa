"""The built-in "synthetic" corpus: deterministic procedural songs, so everything runs with no
data. Melodies over chord progressions, harmonic timbres with envelopes, bass and drums."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from samplegan_tune.core.errors import UserInputError

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_PROGRESSIONS = {  # 0-based scale degrees of each bar's chord root, e.g. I-V-vi-IV
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 0, 4), (1, 4, 0, 0)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4)),
}
_NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_RHYTHMS = (  # onsets on a 16-step bar; each bar of a melody phrase draws one
    (0, 4, 8, 12),
    (0, 2, 4, 6, 8, 10, 12, 14),
    (0, 3, 6, 8, 12),
    (0, 4, 6, 8, 12, 14),
    (0, 6, 8, 10, 12),
    (0, 2, 4, 8),
    (0, 8, 10, 12, 14),
)
_BASS_RHYTHMS = ((0, 8), (0, 4, 8, 12), (0, 2, 4, 6, 8, 10, 12, 14), (0, 6, 8, 14), (0, 3, 8, 11))
_KICKS = ((0, 8), (0, 6, 8), (0, 8, 10), (0, 4, 8, 12), (0, 7, 8))
_TIMBRES = {  # (low, high) per song for: lead, pad, pluck (arpeggio), bass
    "partials": ((8, 8), (5, 5), (8, 8), (6, 6)),
    "rolloff": ((1.0, 1.8), (1.4, 2.0), (1.0, 1.5), (1.2, 2.2)),  # partial k: amplitude k^-r
    "odd": ((0, 0.8), (0, 0), (0, 0), (0, 0.8)),  # > 0.5: odd partials only (hollow, reedy)
    "attack": ((0.01, 0.03), (0.08, 0.3), (0.004, 0.004), (0.005, 0.02)),  # s
    "decay": ((0.2, 0.6), (0.5, 1.5), (0.15, 0.4), (0.2, 0.5)),  # s, exponential
    "sustain": ((0.4, 0.8), (0.6, 0.9), (0.0, 0.1), (0.5, 0.8)),  # level
    "release": ((0.08, 0.08), (0.3, 0.3), (0.05, 0.05), (0.06, 0.06)),  # s, at most
    "damp": ((0.0, 3.0), (0.0, 0.5), (2.0, 6.0), (0.5, 3.0)),  # per s: upper partials fade
    "vibrato": ((0.002, 0.006), (0, 0), (0, 0), (0, 0)),  # relative depth at 5.5 Hz
    "detune": ((0, 0), (0.002, 0.005), (0, 0), (0, 0)),  # ratio of the two oscillators
    "legato": ((0.7, 0.95), (0.97, 0.97), (0.9, 0.9), (0.6, 0.9)),  # gate / note spacing
}


def synthetic_songs(
    seconds: float = 180.0, sample_rate: int = 16000, seed: int = 0
) -> list[tuple[str, torch.Tensor]]:
    """The built-in corpus: procedural songs, deterministic for a given seed.

    Each ~30 s song has its own key, mode, tempo, chord progression and instruments: a lead
    melody (two phrases in AABA form) over a pad or an arpeggio, a bass line, and drums
    (pitch-swept kick, band-passed noise snare, high-passed noise hi-hat), plus a short room
    reverb. Tones are additive partials with roll-off, ADSR envelopes, vibrato and detune.
    Synthesis runs in numpy, single-threaded, so it neither depends on nor fights over torch's
    thread pool (which slows 10x when another process holds a core).

    Args:
        seconds: Total duration; split into max(1, round(seconds / 30)) songs.
        sample_rate: Hz, at least 4000.
        seed: Same seed, bit-identical audio (same machine and numpy); another seed, other music.

    Returns:
        `(name, audio (T,) float32)` pairs, each song at -20 dBFS RMS (±0.5 dB) with peaks
        ≤ 0.999; the lengths add up to round(seconds * sample_rate).
    """
    total = round(seconds * sample_rate)
    if total < 1 or sample_rate < 4000:
        raise UserInputError(
            f"synthetic corpus: needs seconds > 0 and a rate ≥ 4000 Hz, got {seconds} s at "
            f"{sample_rate} Hz"
        )
    n_songs = max(1, round(seconds / 30.0))
    songs = []
    for i in range(n_songs):
        size = total // n_songs + (i < total % n_songs)
        name, audio = _song(np.random.default_rng([seed, i]), size, sample_rate)
        songs.append((f"synthetic-{i:02d}-{name}", audio))
    return songs


def _song(rng: np.random.Generator, size: int, sr: int) -> tuple[str, torch.Tensor]:
    """One song of `size` samples: its name ("Aminor-112bpm") and audio (size,)."""
    mode = str(rng.choice(["major", "minor"]))
    tonic, bpm = int(rng.integers(12)), float(rng.uniform(84.0, 140.0))
    scale, prog = _SCALES[mode], _PROGRESSIONS[mode][rng.integers(len(_PROGRESSIONS[mode]))]
    step = 60.0 / bpm / 4.0 * sr  # samples per sixteenth note
    n_bars = math.ceil(size / (16 * step))
    base = 60 + tonic - (12 if tonic > 6 else 0)  # melody's tonic, MIDI 54..66

    def midi(degree: int, octave: int) -> int:
        return base + 12 * octave + scale[degree % 7] + 12 * (degree // 7)

    roots = [prog[b % 4] for b in range(n_bars)]
    phrases = [_phrase(rng, prog) for _ in range(2)]
    melody = [
        (64 * s + on, midi(d, 0), v)
        for s in range(math.ceil(n_bars / 4))
        for on, d, v in phrases["AABA"[s % 4] == "B"]
    ]
    chord = [(16 * b, [midi(r + i, -1) for i in (0, 2, 4)]) for b, r in enumerate(roots)]
    parts = [_voice(melody, step, size, sr, _timbre(rng, "lead")) * rng.uniform(0.25, 0.35)]
    if rng.random() < 0.5:  # sustained pad, one voice per chord tone
        pad = _timbre(rng, "pad")
        for i in range(3):
            parts.append(_voice([(on, ns[i], 0.8) for on, ns in chord], step, size, sr, pad) * 0.1)
    else:  # arpeggio up and down the chord in eighths
        arp = [
            (on + 2 * j, ns[j % 3] + 12 * (j // 3 % 2), 0.7) for on, ns in chord for j in range(8)
        ]
        parts.append(_voice(arp, step, size, sr, _timbre(rng, "pluck")) * rng.uniform(0.15, 0.22))
    rhythm = _BASS_RHYTHMS[rng.integers(len(_BASS_RHYTHMS))]
    bass = [
        (16 * b + on, midi(r, -2) + 12 * (on % 8 != 0 and rng.random() < 0.3), 0.9)
        for b, r in enumerate(roots)
        for on in rhythm
    ]
    parts.append(_voice(bass, step, size, sr, _timbre(rng, "bass")) * rng.uniform(0.3, 0.4))
    parts.append(_drums(rng, n_bars, step, size, sr))
    mix = _reverb(rng, np.sum(parts, axis=0), sr)
    return f"{_NOTE_NAMES[tonic]}{mode}-{round(bpm)}bpm", _master(mix)


def _phrase(rng: np.random.Generator, prog: Sequence[int]) -> list[tuple[int, int, float]]:
    """Four bars of (onset step, scale degree, velocity); strong beats land on chord tones."""
    notes, degree = [], int(rng.integers(2, 7))
    for bar, root in enumerate(prog):
        for on in _RHYTHMS[rng.integers(len(_RHYTHMS))]:
            if on in (0, 8):
                tones = [root + i + 7 * o for i in (0, 2, 4) for o in (-1, 0, 1)]
                degree = min(tones, key=lambda d: (abs(d - degree), d))
            else:
                degree += int(rng.choice([-2, -1, -1, 1, 1, 2]))
            degree = min(max(degree, 0), 11)
            velocity = 0.0 if rng.random() < 0.08 else (1.0 if on % 4 == 0 else 0.75)
            notes.append((16 * bar + on, degree, velocity))
    return notes


def _timbre(rng: np.random.Generator, kind: str) -> dict[str, float]:
    """Draw one instrument's parameters from `_TIMBRES` for kind lead, pad, pluck or bass."""
    column = ("lead", "pad", "pluck", "bass").index(kind)
    return {name: float(rng.uniform(*ranges[column])) for name, ranges in _TIMBRES.items()}


def _voice(
    notes: Sequence[tuple[int, int, float]], step: float, size: int, sr: int, tb: dict[str, float]
) -> np.ndarray:
    """Render a monophonic line of (onset step, MIDI note, velocity) to (size,) float32.

    Each note holds until the next onset, so the phase runs on without clicks; the envelope
    (attack, exponential decay to sustain, release after the gate) shapes every note.
    """
    onsets = np.array([round(on * step) for on, _, _ in notes], dtype=np.int64)
    keep = onsets < size
    on = onsets[keep]  # (n,) increasing
    f0 = 440.0 * 2.0 ** ((np.array([n[1] for n in notes])[keep] - 69) / 12)  # (n,) Hz
    vel = np.array([n[2] for n in notes], dtype=np.float32)[keep]
    region = ((np.append(on[1:], size) - on) / sr).astype(np.float32)  # (n,) s to next onset
    gate = region * tb["legato"]
    release = np.clip(region - gate, 1e-3, tb["release"])
    k = np.arange(1, int(tb["partials"]) + 1, dtype=np.float32)  # (K,) partial numbers
    detunes = (1.0 - tb["detune"], 1.0 + tb["detune"]) if tb["detune"] else (1.0,)
    # (n, K): roll-off, odd-only timbres, and nothing above 0.45 * rate (no aliasing)
    amps = k ** -tb["rolloff"] * (f0[:, None] * k * max(detunes) < 0.45 * sr)
    amps = (amps * ((k % 2 == 1) | (tb["odd"] <= 0.5))).astype(np.float32)
    t = np.arange(size)
    idx = np.searchsorted(on, t, side="right") - 1  # (size,) the sounding note
    sounding = idx >= 0
    idx = np.maximum(idx, 0)
    dt = ((t - on[idx]) / sr).astype(np.float32)  # s since the note's onset
    env = _adsr(dt, idx, gate, release, tb) * vel[idx] * sounding  # (size,)
    # (K, size): partial k fades as bright^(k-1), so upper partials die first, like a string
    partial_amp = np.ascontiguousarray(amps.T)[:, idx]
    bright = np.exp(np.float32(-tb["damp"]) * dt)
    fade = bright.copy()
    for row in partial_amp[1:]:
        row *= fade
        fade *= bright
    freq = f0[idx]  # (size,) float64, so the running phase stays accurate over minutes
    if tb["vibrato"]:
        lfo = np.sin(np.float32(2 * np.pi * 5.5 / sr) * t.astype(np.float32))  # 5.5 Hz
        freq = freq * (1.0 + tb["vibrato"] * lfo)
    cycles = np.cumsum(freq * (2 * np.pi / sr))  # (size,) running phase, float64
    out = np.zeros(size, dtype=np.float32)
    for ratio in detunes:
        phase = np.mod(cycles * ratio, 2 * np.pi).astype(np.float32)
        waves = np.sin(np.multiply.outer(k, phase))  # (K, size)
        out += np.einsum("kt,kt->t", waves, partial_amp)
    return out * env / len(detunes)


def _adsr(
    dt: np.ndarray, idx: np.ndarray, gate: np.ndarray, release: np.ndarray, tb: dict[str, float]
) -> np.ndarray:
    """Envelope (size,) from time since onset `dt` (size,) and the sounding note `idx` (size,);
    `gate` and `release` (n,) are per note, times in s."""
    attack, decay, sustain = tb["attack"], tb["decay"], tb["sustain"]

    def held(x: np.ndarray) -> np.ndarray:
        return np.where(
            x < attack, x / attack, sustain + (1 - sustain) * np.exp((attack - x) / decay)
        )

    gate_at = gate[idx]
    after = held(gate)[idx] * np.clip(1.0 - (dt - gate_at) / release[idx], 0.0, None)
    return np.where(dt < gate_at, held(dt), after)


def _drums(rng: np.random.Generator, n_bars: int, step: float, size: int, sr: int) -> np.ndarray:
    """Kick, snare and hi-hat hits (size,), entering after an intro of 0-2 bars."""
    t = np.arange(round(0.4 * sr)) / sr  # (L,) template time axis
    sweep = 0.03  # s: how fast the kick's pitch falls from ~155 Hz to 45 Hz
    kick = np.sin(2 * np.pi * (45 * t + 110 * sweep * (1 - np.exp(-t / sweep))))
    kick *= np.exp(-t / rng.uniform(0.12, 0.25)) * np.minimum(t / 0.002, 1.0)
    snare = _noise(rng, t.size, sr, 800.0, 5000.0) * np.exp(-t / 0.09)
    snare += 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    hat = _noise(rng, t.size, sr, min(7000.0, 0.35 * sr), None) * np.exp(-t / 0.025)
    kicks, hat_every = _KICKS[rng.integers(len(_KICKS))], int(rng.choice([1, 2, 2]))
    kit = (  # template, gain, velocity per sixteenth of a bar (hi-hats accented on the beat)
        (kick, rng.uniform(0.45, 0.6), [float(s in kicks) for s in range(16)]),
        (snare, rng.uniform(0.12, 0.18), [float(s in (4, 12)) for s in range(16)]),
        (
            hat,
            rng.uniform(0.05, 0.09),
            [(0, 0.6, 1)[(s % hat_every == 0) + (s % 4 == 0)] for s in range(16)],
        ),
    )
    intro = int(rng.integers(0, 3))
    out = np.zeros(size)
    for template, gain, velocity in kit:
        hits = [
            (round((16 * b + s) * step), velocity[s])
            for b in range(intro, n_bars)
            for s in range(16)
            if velocity[s] > 0
        ]
        where = np.array([h[0] for h in hits], dtype=np.int64)[:, None] + np.arange(t.size)
        value = np.array([h[1] for h in hits])[:, None] * template * gain  # (hits, L) as `where`
        inside = where < size
        out += np.bincount(where[inside], weights=value[inside], minlength=size)
    return out.astype(np.float32)


def _noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float | None) -> np.ndarray:
    """(n,) unit-RMS noise shaped in the frequency domain to a 12 dB/octave band low..high."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = 1.0 / (1.0 + (low / np.maximum(f, 1.0)) ** 4)
    if high is not None:
        shape /= 1.0 + (f / high) ** 4
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)
    return x / np.sqrt(np.mean(x**2))


def _reverb(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    """Add a room tail (decaying noise impulse response, up to 1 s) by FFT convolution."""
    t = np.arange(sr) / sr
    ir = rng.standard_normal(sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    ir /= np.sqrt((ir**2).sum())
    n = 1 << (x.size + ir.size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)[: x.size]
    return (x + rng.uniform(0.15, 0.3) * wet).astype(np.float32)


def _master(x: np.ndarray, target_dbfs: float = -20.0) -> torch.Tensor:
    """(size,) at `target_dbfs` RMS, peaks ≤ 0.999: peaks above a knee are soft-clipped (the
    drums') rather than letting them force the whole song quieter."""
    knee, target = 0.7, 10.0 ** (target_dbfs / 20.0)
    for _ in range(3):
        x = x * (target / max(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), 1e-9))
        over = np.maximum(np.abs(x) - knee, 0.0)
        x = np.where(over > 0, np.sign(x) * (knee + (0.999 - knee) * np.tanh(over / (1 - knee))), x)
    return torch.from_numpy(x.astype(np.float32))
