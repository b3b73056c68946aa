"""Features that see time: how a clip changes and repeats, and how far two clips differ.

All of them work on `time_frames`: 64-band log-mel power frames with ~64 ms windows (the
`analysis_fft` size) and a hop of 1/32 of a window (2 ms at 16 kHz). The hop is that small so
that a loop of any period, whether or not it is a multiple of a segment or of an STFT hop,
lines up with itself within one hop at some multiple of its period: its frames then match to
within a 1/64-window shift, which moves a log-mel frame far less than music changes.
These features are fixed (never the user's embedding): they need a fine, known time axis.
"""

from __future__ import annotations

import torch

from samplegan_tune.audio.sound import mel_power
from samplegan_tune.judge.features import LOG_FLOOR, analysis_fft

N_MELS = 64
HOP_DIVISOR = 32  # hop = window / 32
MAX_LAG_SECONDS = 2.0  # the longest repetition `repetition` looks for
CHANGE_DIVISOR = 2  # `spectral_change` compares frames half a window (~32 ms) apart
RELATIVE_FLOOR = 1e-6  # −60 dB re the clip's mean band power
SPREAD_STRIDE = 8  # `aligned_distance` uses every 8th frame (a quarter-window hop)


def time_frames(clips: torch.Tensor, sample_rate: int, chunk: int = 4) -> torch.Tensor:
    """(B, T) audio -> (B, F, 64) natural-log mel power frames, hop = window / 32.

    Power is scaled so that white noise of variance s² gives s² per bin and floored 60 dB
    below the clip's mean band power (and at −100 dB): what lies further down is inaudible,
    and the log of it (a tone's window side lobes, say) would only add noise to distances.
    Computed `chunk` clips at a time: the complex STFT of a whole set would be large.
    """
    n_fft = analysis_fft(sample_rate)
    out = []
    for piece in clips.float().split(chunk):
        mel = mel_power(piece, sample_rate, n_fft, n_fft // HOP_DIVISOR, N_MELS)  # (b, F, 64)
        floor = RELATIVE_FLOOR * mel.mean((1, 2), keepdim=True) + LOG_FLOOR
        out.append(torch.log(mel + floor))
    return torch.cat(out)


def lag_distances(frames: torch.Tensor, min_lag: int, max_lag: int) -> torch.Tensor:
    """RMS distance between frames `lag` apart, for every lag in min_lag..max_lag.

    Args:
        frames: (B, F, D), F > max_lag ≥ min_lag ≥ 1.

    Returns:
        (B, max_lag − min_lag + 1): sqrt of the mean over t < F − lag and over D of
        (frames[t] − frames[t + lag])², computed for all lags at once by FFT autocorrelation.
    """
    x = frames.double() - frames.double().mean(1, keepdim=True)  # distances ignore the mean
    count, dim = x.shape[1], x.shape[2]
    n = 1 << (2 * count - 1).bit_length()
    spectrum = torch.fft.rfft(x, n, dim=1)
    cross = torch.fft.irfft(spectrum.abs().pow(2), n, dim=1).sum(2)[:, : max_lag + 1]  # (B, L)
    energy = x.pow(2).sum(2)  # (B, F)
    cumulative = torch.nn.functional.pad(energy.cumsum(1), (1, 0))  # (B, F + 1)
    lags = torch.arange(min_lag, max_lag + 1)
    head = cumulative[:, count - lags]  # sum over t < F − lag
    tail = cumulative[:, -1:] - cumulative[:, lags]  # sum over t ≥ lag
    total = head + tail - 2 * cross[:, lags]
    return (total.clamp_min(0) / ((count - lags) * dim)).sqrt()


def lag_range(num_frames: int, sample_rate: int) -> tuple[int, int]:
    """Frame lags `repetition` searches: one window (~64 ms, frames no longer overlap) up to
    min(2 s, half the clip), so every lag still compares half the clip's frames."""
    hop = analysis_fft(sample_rate) // HOP_DIVISOR
    half_clip = (num_frames + HOP_DIVISOR) // 2  # frames in half the clip's samples
    longest = min(round(MAX_LAG_SECONDS * sample_rate / hop), half_clip)
    return min(HOP_DIVISOR, longest), longest


def repetition(frames: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Per clip, the smallest RMS distance over `lag_range` lags: (B, F, D) -> (B,).

    0 for a clip that repeats exactly at some lag; music keeps changing, so it stays well
    above 0 at every lag.
    """
    return lag_distances(frames, *lag_range(frames.shape[1], sample_rate)).amin(1).float()


def spectral_change(frames: torch.Tensor) -> torch.Tensor:
    """Per clip, the median RMS distance between frames half a window apart: (B, F, D) -> (B,).

    ≈ 0 for a frozen spectrum, a drone, or a loop much shorter than a window.
    """
    step = HOP_DIVISOR // CHANGE_DIVISOR
    diff = frames[:, step:].double() - frames[:, :-step].double()
    return diff.pow(2).mean(2).sqrt().median(1).values.float()


def aligned_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS distance between time-aligned frames of two sets of clips.

    Args:
        a, b: (P, F, D) and (P, F', D) `time_frames`; the first min(F, F') frames count,
            every `SPREAD_STRIDE`-th of them.

    Returns:
        (P,): 0 where a clip of `a` equals its partner in `b`.
    """
    count = min(a.shape[1], b.shape[1])
    diff = a[:, :count:SPREAD_STRIDE].double() - b[:, :count:SPREAD_STRIDE].double()
    return diff.pow(2).mean((1, 2)).sqrt().float()


def seed_spread(frames: torch.Tensor) -> float:
    """Mean `aligned_distance` over every pair of seeds and every primer.

    Args:
        frames: (K, B, F, D), K ≥ 2: the `time_frames` of B primers each rolled out with K
            noise seeds.
    """
    pairs = [
        aligned_distance(frames[i], frames[j])
        for i in range(len(frames))
        for j in range(i + 1, len(frames))
    ]
    return float(torch.cat(pairs).mean())


def cross_spread(frames: torch.Tensor, max_pairs: int = 256) -> float | None:
    """Mean `aligned_distance` between different clips of (N, F, D) (up to `max_pairs` pairs,
    neighbours first); None when N < 2."""
    pairs = [(i, i + gap) for gap in range(1, len(frames)) for i in range(len(frames) - gap)]
    if not pairs:
        return None
    first, second = zip(*pairs[:max_pairs], strict=True)
    return float(aligned_distance(frames[list(first)], frames[list(second)]).mean())
