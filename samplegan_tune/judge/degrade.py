"""Graded degradations of real audio and the seed paper's failures, for calibrating the judge.

As in the FAD paper (Kilgour et al. 2019): a useful judge scores each family of degradation
worse as its strength grows. Every function is pure torch on (B, T) float waveforms, keeps
T, and is deterministic given `seed` (a CPU `torch.Generator`, never the global RNG).

    families    add_noise, low_pass, shuffle_grains, change_speed, gate, clip, quantise
    failures    loop, repeat_last_second (from a primer); static, silence, drone (a level)
    all cases   graded_cases(truth, primer) -> [Case(name, family, strength, clips)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

SAMPLE_RATE = 16000
TAPER = 0.1  # low_pass: the gain falls to 0 over the top 10 % below the cutoff
RESAMPLE_MARGIN = 64  # change_speed: extra input, so the resampler's zero-padded edge is cut
_EPS = 1e-12


@dataclass(frozen=True)
class Case:
    """One calibration row: `clips` (B, T) named `name` (e.g. "noise 20 dB") in `family`
    ("noise"; "truth" for the real continuation), whose `strength` grows with severity
    within the family (e.g. −SNR in dB, −cutoff in Hz)."""

    name: str
    family: str
    strength: float
    clips: torch.Tensor


def _check(x: torch.Tensor) -> tuple[int, int]:
    if x.dim() != 2:
        raise ValueError(f"expected a (B, T) waveform, got shape {tuple(x.shape)}")
    return x.shape[0], x.shape[1]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _power(x: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, 1) float32: each row's mean square."""
    return x.float().pow(2).mean(dim=-1, keepdim=True)


def _scaled(x: torch.Tensor, power: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`x` (B, T) with row b scaled to mean square `power[b]` ((B, 1)), as `like`'s dtype and
    device; an all-zero row stays zero."""
    x = x.to(like.device)
    return (x * (power / _power(x).clamp_min(_EPS)).sqrt()).to(like.dtype)


def _white(like: torch.Tensor, power: torch.Tensor, seed: int) -> torch.Tensor:
    """White Gaussian noise (B, T) with row b's mean square exactly `power[b]` ((B, 1))."""
    return _scaled(torch.randn(like.shape, generator=_generator(seed)), power, like)


def add_noise(x: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """(B, T) plus white noise (a hissing generator), scaled per clip so that the measured
    SNR (clip power ÷ noise power) is exactly `snr_db`; a silent clip stays silent.

    Args:
        x: (B, T) waveforms.
        snr_db: Signal-to-noise ratio in dB; lower is stronger.
        seed: The noise draw.
    """
    _check(x)
    return x + _white(x, _power(x) / 10.0 ** (snr_db / 10.0), seed)


def low_pass(x: torch.Tensor, cutoff_hz: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, T) through a steep low-pass: a dull, band-limited generator.

    A zero-phase FFT filter: gain 1 up to (1 − TAPER)·cutoff, a raised-cosine fall to 0 at
    the cutoff, 0 above. Clips are zero-padded by 4 / (TAPER·cutoff) s first so the ringing
    (≈ 1 / (TAPER·cutoff) s: 10 ms at 1 kHz) does not wrap from a clip's end to its start.

    Args:
        x: (B, T) waveforms.
        cutoff_hz: Where the gain reaches 0; lower is stronger. At or above Nyquist: a copy.
        sample_rate: Hz.
    """
    _, length = _check(x)
    if cutoff_hz <= 0:
        raise ValueError(f"cutoff_hz must be positive, got {cutoff_hz}")
    if cutoff_hz >= sample_rate / 2:
        return x.clone()
    width = TAPER * cutoff_hz
    size = length + math.ceil(4 * sample_rate / width)
    freqs = torch.fft.rfftfreq(size, 1.0 / sample_rate, device=x.device)
    gain = 0.5 - 0.5 * torch.cos(math.pi * ((cutoff_hz - freqs) / width).clamp(0.0, 1.0))
    spectrum = torch.fft.rfft(x.float(), n=size) * gain
    return torch.fft.irfft(spectrum, n=size)[:, :length].to(x.dtype)


def _grain_order(batch: int, count: int, seed: int) -> torch.Tensor:
    """(B, count): a random permutation per row, never the identity (for count ≥ 2)."""
    order = torch.rand(batch, count, generator=_generator(seed)).argsort(dim=1)
    identity = (order == torch.arange(count)).all(dim=1)
    order[identity] = order[identity].roll(1, dims=1)
    return order


def _overlap_add(pieces: torch.Tensor, grain: int, fade: int) -> torch.Tensor:
    """(B, m, grain + fade) pieces laid every `grain` samples -> (B, m·grain + fade).

    Each piece but the first fades in over its first `fade` samples, and each fades out over
    its last `fade` (its source's continuation): the gains at every join add up to 1.
    """
    batch, m, _ = pieces.shape
    windows = torch.ones(m, grain + fade, device=pieces.device, dtype=pieces.dtype)
    if fade:
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(fade) + 0.5) / fade)
        windows[1:, :fade] = ramp.to(windows)
        windows[:, grain:] = 1.0 - ramp.to(windows)
    pieces = pieces * windows
    out = F.pad(pieces[..., :grain].reshape(batch, m * grain), (0, fade))
    tails = F.pad(pieces[..., grain:], (0, grain - fade)).reshape(batch, m * grain)
    out[:, grain:] += tails[:, : m * grain + fade - grain]
    return out


def shuffle_grains(
    x: torch.Tensor,
    grain_ms: float,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    crossfade_ms: float = 5.0,
) -> torch.Tensor:
    """(B, T) cut into grains put in a random order: the right sounds, no musical structure.

    Each clip's T // grain whole grains are put in a random order (each clip its own, never
    the original); the T % grain leftover samples stay at the end. Joins are raised-cosine
    crossfades of min(crossfade_ms, grain_ms / 4) (5 ms, 2.5 ms for 10 ms grains): a grain's
    source continuation fades out as the next grain fades in, so clicks are not the only cue.
    Between joins a grain is its source samples unchanged; crossfade_ms=0 permutes samples.

    Args:
        x: (B, T) waveforms.
        grain_ms: Grain length in ms; shorter is stronger. Fewer than 2 grains: a copy.
        sample_rate: Hz.
        seed: The order.
        crossfade_ms: Join length in ms (at most a quarter grain).
    """
    batch, length = _check(x)
    grain = max(1, round(grain_ms * sample_rate / 1000))
    fade = min(round(crossfade_ms * sample_rate / 1000), grain // 4)
    count = length // grain
    if count < 2:
        return x.clone()
    order = _grain_order(batch, count, seed).to(x.device)
    if length % grain:
        order = torch.cat([order, order.new_full((batch, 1), count)], dim=1)
    m = order.shape[1]
    padded = F.pad(x, (0, m * grain + fade - length))
    index = order[..., None] * grain + torch.arange(grain + fade, device=x.device)
    pieces = padded.gather(1, index.reshape(batch, -1)).reshape(batch, m, grain + fade)
    return _overlap_add(pieces, grain, fade)[:, :length]


def _tile(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, P) -> (B, length): `x` repeated end to end."""
    return x.repeat(1, math.ceil(length / x.shape[-1]))[:, :length]


def change_speed(
    x: torch.Tensor, factor: float, sample_rate: int = SAMPLE_RATE, *, length: int | None = None
) -> torch.Tensor:
    """(B, S) -> (B, length) played `factor` times as fast, like a tape: pitch and tempo
    shift together (2**(3/12) ≈ 1.19 is 3 semitones up); a generator off in both.

    Output sample t is input time t·factor (torchaudio's windowed-sinc resampler, the factor
    as a fraction of denominator ≤ 1000: < 2 cents off), from the input's start. Slower
    (factor < 1) uses only the first ≈ length·factor input samples; faster needs ≈
    length·factor, and where `x` is shorter it wraps around to its start (a jump and a
    repeat: pass more input, as `graded_cases` does).

    Args:
        x: (B, S) waveforms.
        factor: Speed ratio > 0.
        sample_rate: Hz; only checked: a speed ratio is the same in samples.
        length: Output samples; default S.
    """
    _, size = _check(x)
    if factor <= 0 or sample_rate <= 0:
        raise ValueError(f"factor and sample_rate must be positive, got {factor}, {sample_rate}")
    length = size if length is None else length
    ratio = Fraction(factor).limit_denominator(1000)
    source = _tile(x, math.ceil(length * ratio) + RESAMPLE_MARGIN)
    out = AF.resample(source, orig_freq=ratio.numerator, new_freq=ratio.denominator)
    return out[:, :length]


def _gate_mask(
    batch: int, length: int, on: tuple[float, float], off: tuple[float, float], seed: int
) -> torch.Tensor:
    """(B, T) of 1/0: alternating on/off segments, lengths uniform in `on` and `off`
    ((shortest, longest) samples); each row starts on or off at random."""
    gen = _generator(seed)
    count = math.ceil(length / max(1.0, min(on[0], off[0]) - 0.5)) + 1  # covers T at worst
    is_on = (torch.arange(count) + torch.randint(0, 2, (batch, 1), generator=gen)) % 2 == 0
    lo = torch.where(is_on, on[0], off[0])  # (B, count)
    hi = torch.where(is_on, on[1], off[1])
    sizes = (lo + torch.rand(batch, count, generator=gen) * (hi - lo)).round().clamp_min(1)
    ends = sizes.cumsum(dim=1)
    times = torch.arange(length, dtype=ends.dtype).expand(batch, length).contiguous()
    return is_on.gather(1, torch.searchsorted(ends, times, right=True)).float()


def gate(
    x: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    on_ms: tuple[float, float] = (40.0, 120.0),
    off_ms: tuple[float, float] = (40.0, 120.0),
) -> torch.Tensor:
    """(B, T) gated on and off: a stuttering generator, or one with dropouts.

    Sound and silence alternate in segments of uniformly random length, each clip with its
    own pattern; the defaults mute about half of the time (the level drops ≈ 3 dB). Each
    switch is a 2 ms raised-cosine ramp (a Hann-smoothed mask), so the gate does not click.

    Args:
        x: (B, T) waveforms.
        sample_rate: Hz.
        seed: The pattern.
        on_ms: (shortest, longest) sounding segment in ms.
        off_ms: (shortest, longest) muted segment in ms.
    """
    batch, length = _check(x)
    per_ms = sample_rate / 1000
    on, off = (on_ms[0] * per_ms, on_ms[1] * per_ms), (off_ms[0] * per_ms, off_ms[1] * per_ms)
    mask = _gate_mask(batch, length, on, off, seed)
    ramp = round(0.002 * sample_rate) // 2 * 2 + 1  # odd, so the ramps stay centred
    kernel = torch.hann_window(ramp + 2, periodic=False)[1:-1]
    padded = F.pad(mask[:, None], (ramp // 2, ramp // 2), mode="replicate")
    mask = F.conv1d(padded, (kernel / kernel.sum()).view(1, 1, ramp))[:, 0]
    return x * mask.to(x)


def clip(x: torch.Tensor, ratio: float, keep_level: bool = True) -> torch.Tensor:
    """(B, T) hard-clipped at `ratio` × each clip's peak: an overdriven output stage.

    With `keep_level` the result is scaled back to the input's RMS (make-up gain, as after a
    mastering clipper), so distortion, not a level drop, is the cue; its peak then stays ≤
    the input's. Without it the peak is exactly `ratio` × the input's.

    Args:
        x: (B, T) waveforms.
        ratio: In (0, 1]; lower is stronger (0.1: clipped 20 dB below the peak).
        keep_level: Restore each clip's RMS after clipping.
    """
    _check(x)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    limit = ratio * x.abs().amax(dim=-1, keepdim=True)
    y = torch.minimum(torch.maximum(x, -limit), limit)
    return _scaled(y, _power(x), x) if keep_level else y


def quantise(x: torch.Tensor, bits: int) -> torch.Tensor:
    """(B, T) quantised to `bits` over full scale (uniform PCM): a low-bit-depth converter.

    Levels k / 2^(bits−1) for k in [−2^(bits−1), 2^(bits−1) − 1], two's-complement style
    (beyond is clamped): at most 2**bits values. Relative to full scale, so quiet passages
    suffer most (at 4 bits anything within ±1/16 rounds to 0).

    Args:
        x: (B, T) waveforms, nominally in [−1, 1].
        bits: ≥ 1; fewer is stronger.
    """
    _check(x)
    if bits < 1:
        raise ValueError(f"bits must be ≥ 1, got {bits}")
    half = 2 ** (bits - 1)
    return (x * half).round().clamp(-half, half - 1) / half


def loop(primer: torch.Tensor, period_samples: int, length: int) -> torch.Tensor:
    """The seed paper's failure: the primer (B, P)'s last `period_samples` (1 to P) repeated
    to (B, length), exactly periodic."""
    _, size = _check(primer)
    if not 0 < period_samples <= size:
        raise ValueError(f"period_samples must be in [1, {size}], got {period_samples}")
    return _tile(primer[:, -period_samples:], length)


def repeat_last_second(
    primer: torch.Tensor, length: int, sample_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """The primer (B, P ≥ rate)'s last second repeated to (B, length): `scale.py`'s
    "repeated second", `loop` with a 1 s period."""
    return loop(primer, sample_rate, length)


def static(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A generator that only hisses: white noise shaped like `like` (B, T), drawn with `seed`,
    at each clip's RMS exactly."""
    _check(like)
    return _white(like, _power(like), seed)


def silence(like: torch.Tensor, level_dbfs: float = -80.0, seed: int = 0) -> torch.Tensor:
    """A generator that died: white noise shaped like `like` (B, T), drawn with `seed`, at
    `level_dbfs` RMS in every clip (0 dBFS = RMS 1)."""
    batch, _ = _check(like)
    return _white(like, torch.full((batch, 1), 10.0 ** (level_dbfs / 10.0)).to(like.device), seed)


_CHORD = (1.0, 5 / 4, 3 / 2, 2.0)  # a just major triad and octave: partials do not beat


def drone(
    like: torch.Tensor, sample_rate: int = SAMPLE_RATE, seed: int = 0, depth: float = 0.1
) -> torch.Tensor:
    """(B, T) sustained chords at each clip's RMS exactly: musical spectra, no onsets.

    Per clip: a random root A2 (110 Hz) to G#3, a just major chord and octave on it, each
    note with 4 harmonics of amplitude 1/k (none above 0.45·rate) at random phases, under a
    slow swell (a sine of 0.1–0.3 Hz, ±`depth`: ±0.9 dB by default).

    Args:
        like: (B, T) clips whose shape and levels are copied.
        sample_rate: Hz.
        seed: The roots, phases and swells.
        depth: Relative amplitude of the swell.
    """
    batch, length = _check(like)
    gen = _generator(seed)
    root = 110.0 * 2.0 ** (torch.randint(0, 12, (batch, 1), generator=gen) / 12.0)
    phase = 2 * math.pi * torch.rand(batch, 4 * len(_CHORD) + 1, generator=gen).double()
    swell = 0.1 + 0.2 * torch.rand(batch, 1, generator=gen).double()  # Hz
    t = torch.arange(length, dtype=torch.float64) / sample_rate  # float64: long phases
    wave = torch.zeros(batch, length, dtype=torch.float64)
    for i, (note, k) in enumerate((n, k) for n in _CHORD for k in (1, 2, 3, 4)):
        freq = root.double() * note * k  # (B, 1)
        amplitude = (freq < 0.45 * sample_rate) / k
        wave += amplitude * torch.sin(2 * math.pi * freq * t + phase[:, i : i + 1])
    wave *= 1.0 + depth * torch.sin(2 * math.pi * swell * t + phase[:, -1:])
    return _scaled(wave, _power(like), like)


def _speed_case(truth: torch.Tensor, primer: torch.Tensor, semitones: int, sr: int) -> Case:
    """Real audio ending where the truth ends, moved `semitones`; faster takes the extra input
    it needs from the primer."""
    factor, length = 2.0 ** (semitones / 12), truth.shape[1]
    need = math.ceil(length * Fraction(factor).limit_denominator(1000)) + RESAMPLE_MARGIN
    audio = torch.cat([primer, truth], dim=1)[:, -need:]
    clips = change_speed(audio, factor, sr, length=length)
    return Case(f"speed ×{factor:.2f}", "speed", float(abs(semitones)), clips)


def _degraded_cases(truth: torch.Tensor, primer: torch.Tensor, sr: int, seed: int) -> list[Case]:
    """The graded families applied to the truth, each family mildest first."""
    t = truth
    return [
        *(Case(f"noise {v} dB", "noise", float(-v), add_noise(t, v, seed)) for v in (20, 10, 0)),
        *(
            Case(f"low-pass {v // 1000} kHz", "low-pass", float(-v), low_pass(t, v, sr))
            for v in (4000, 2000, 1000)
        ),
        *(
            Case(f"grains {v} ms", "grains", float(-v), shuffle_grains(t, v, sr, seed))
            for v in (200, 50, 10)
        ),
        *(_speed_case(t, primer, v, sr) for v in (3, -3)),
        Case("gate 40–120 ms", "gate", 0.5, gate(t, sr, seed)),
        *(
            Case(f"clip {v:g} × peak", "clip", -20.0 * math.log10(v), clip(t, v))
            for v in (0.5, 0.25, 0.1)
        ),
        *(Case(f"quantise {v} bit", "quantise", float(-v), quantise(t, v)) for v in (8, 6, 4)),
    ]


def _failure_cases(truth: torch.Tensor, primer: torch.Tensor, sr: int, seed: int) -> list[Case]:
    """The seed paper's failures, continuing the primer or copying the truth's level."""
    length = truth.shape[1]
    periods = ((500, "500 samples"), (4096, "4096 samples"), (sr, "1 s"))
    return [
        *(Case(f"loop {name}", "loop", sr / v, loop(primer, v, length)) for v, name in periods),
        Case("repeated last second", "repeat", 1.0, repeat_last_second(primer, length, sr)),
        Case("static", "static", 0.0, static(truth, seed)),
        Case("silence −80 dBFS", "silence", 80.0, silence(truth, -80.0, seed)),
        Case("drone", "drone", 0.0, drone(truth, sr, seed)),
    ]


def graded_cases(
    truth: torch.Tensor, primer: torch.Tensor, sample_rate: int = SAMPLE_RATE, seed: int = 0
) -> list[Case]:
    """Every calibration case for a batch of primers and their real continuations.

    In order (strength): the truth (0); noise at 20, 10, 0 dB SNR (−SNR); low-pass at 4, 2,
    1 kHz (−cutoff Hz); grains of 200, 50, 10 ms (−ms); speed ×1.19 and ×0.84, 3 semitones
    up and down (3, 3: as severe); gating (0.5, the muted share); clipping at 0.5, 0.25, 0.1
    × peak (dB below peak); 8, 6, 4 bits (−bits); loops of the primer's last 500, 4096
    samples and 1 s (repeats per second: 32, 3.9, 1 at 16 kHz; the judge's own table ranks
    short loops worst, so this family alone is listed most severe first); the repeated last
    second (1); static (0); silence at −80 dBFS (80); a drone (0).

    Args:
        truth: (B, T) the real continuations.
        primer: (B, P) the audio just before each, P ≥ 1 s (for the loops); with P ≥ 0.19·T
            + 64 the faster speed case is all real audio (else it wraps, see change_speed).
        sample_rate: Hz.
        seed: Every random case's draw (one draw for all strengths of a family).
    """
    batch, _ = _check(truth)
    if _check(primer)[0] != batch or primer.shape[1] < sample_rate:
        raise ValueError(f"primer {tuple(primer.shape)}: want {batch} rows, ≥ {sample_rate} long")
    return [
        Case("truth", "truth", 0.0, truth.clone()),
        *_degraded_cases(truth, primer, sample_rate, seed),
        *_failure_cases(truth, primer, sample_rate, seed),
    ]
