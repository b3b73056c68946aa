"""Continuity of each continuation with its own primer: key, tempo, timbre and level.

The set metrics (`metrics`) compare generated clips with real clips as two sets, so a
continuation in another key or at another tempo than its primer passes as long as it sounds
like music. Here every continuation is compared with the primer it continues, through small
clip descriptors:

    chroma             pitch-class profile (12,): STFT magnitude of ~256 ms frames between
                       80 Hz and 5 kHz, log-compressed, each bin shared between its two
                       nearest pitch classes and weighted by its width in semitones (so every
                       octave counts alike), averaged over time, summing to 1.
    onset_envelope     spectral flux: the mean rise of a 40-band log-mel spectrogram (~32 ms
                       windows, ~8 ms hop); `onset_rate` counts its peaks per second.
    tempo              beats per minute: the strongest lag of the envelope's autocorrelation,
                       weighted by a log-normal prior around 120 BPM (σ = 1 octave).
    periodicity        the envelope's autocorrelation on a log-lag axis, peaks only;
                       `tempo_change` aligns a primer's and a continuation's to read the tempo
                       ratio without deciding which periodicity is the beat.
    spectral_envelope  timbre (13,): DCT coefficients 1..13 of the clip's mean 40-band dB
                       log-mel spectrum (an MFCC without c0, whose level `rms_dbfs` measures).

`continuity` turns them into per-clip distances, each ≈ 0 for a continuation that keeps the
primer's key, tempo, timbre and level: see its docstring. Checked on real music (105 primers
of 1–3 s in 21 metal and game-soundtrack songs, continuations of 2–8 s): a continuation played
19 % fast or slow (3 semitones up or down) is farther than the true one on "key" for 82–90 %
of primers, on "tempo" for 90–98 %, on one of the two for 99 %. Limits: a move to a
neighbouring key (a fifth away, 6 of 7 notes shared) looks near on "key"; "tempo" cannot see
a change beyond half an octave. Everything but "level" ignores gain.
"""

from __future__ import annotations

import math

import torch
import torchaudio

from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.judge.features import LOG_FLOOR, analysis_fft, checked_clips, power_frames

CHROMA_SECONDS = 0.256  # FFT length: 3.9 Hz bins at 16 kHz, under a semitone above ~70 Hz
CHROMA_LOW_HZ = 80.0
CHROMA_HIGH_HZ = 5000.0
CHROMA_COMPRESSION = 100.0  # log(1 + 100 · magnitude / mean magnitude): tames loud partials
ONSET_SECONDS = 0.032  # FFT length of the onset envelope; its hop is a quarter (~8 ms)
N_MELS = 40
TEMPO_RANGE_BPM = (40.0, 240.0)
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0  # σ of the log-normal prior, in octaves
PERIODICITY_SECONDS = (0.15, 2.0)  # lags `periodicity` compares: 400 down to 30 BPM
STEPS_PER_OCTAVE = 24
MAX_TEMPO_CHANGE_OCTAVES = 0.5
ONSET_GAP_SECONDS = 0.05  # an onset is the envelope's maximum within ±50 ms
N_ENVELOPE = 13
RELATIVE_FLOOR = 1e-6  # −60 dB re the clip's mean band power
DISTANCES = ("key", "tempo", "timbre", "level")
"""The keys of `continuity`'s result."""


def _fft_size(sample_rate: int, seconds: float) -> int:
    return 2 ** round(math.log2(seconds * sample_rate))


def _frames(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """`power_frames` of (B, T), zero-padded to at least one frame: (B, F, n_fft / 2 + 1)."""
    if x.shape[1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[1]))
    return power_frames(x, n_fft)


def _log_mel(power: torch.Tensor, n_fft: int, sample_rate: int) -> torch.Tensor:
    """(B, F, n_fft / 2 + 1) power -> (B, F, N_MELS) natural-log mel power, floored 60 dB below
    the clip's mean band power (and at −100 dB) so silence and side lobes stay finite and mute."""
    fbank = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, N_MELS, sample_rate
    )
    mel = power @ fbank
    return torch.log(mel + RELATIVE_FLOOR * mel.mean((1, 2), keepdim=True) + LOG_FLOOR)


def _pitch_class_weights(n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_fft / 2 + 1, 12) map from STFT bins to pitch classes (C = 0).

    A bin between `CHROMA_LOW_HZ` and `CHROMA_HIGH_HZ` goes to its two nearest pitch classes
    in proportion to closeness (a triangle one semitone wide), scaled by 1 / f: a bin spans
    12 · Δf / (f ln 2) semitones, so every octave gets the same total weight.
    """
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    inside = (freqs >= CHROMA_LOW_HZ) & (freqs <= CHROMA_HIGH_HZ)
    pitch = 12.0 * torch.log2(freqs.clamp_min(1.0) / 440.0) + 9.0  # A4 = class 9
    offset = torch.remainder(pitch[:, None] - torch.arange(12.0) + 6.0, 12.0) - 6.0  # (K, 12)
    share = (1.0 - offset.abs()).clamp_min(0.0)
    return (share * inside[:, None] / freqs.clamp_min(1.0)[:, None]).float()


def chroma(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Time-averaged pitch-class profile (see the module docstring).

    Args:
        x: (B, T) audio.
        sample_rate: Its rate in Hz.

    Returns:
        (B, 12), C first, each row ≥ 0 summing to 1; uniform (1 / 12) for silence.
    """
    n_fft = _fft_size(sample_rate, CHROMA_SECONDS)
    magnitude = _frames(x.float(), n_fft).sqrt()  # (B, F, K)
    scale = magnitude.mean((1, 2), keepdim=True) + 1e-8
    compressed = torch.log1p(CHROMA_COMPRESSION * magnitude / scale)
    profile = compressed.mean(1) @ _pitch_class_weights(n_fft, sample_rate) + 1e-12  # (B, 12)
    return profile / profile.sum(1, keepdim=True)


def onset_envelope(x: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, float]:
    """Onset strength: the mean over mel bands of the rise (half-wave rectified frame-to-frame
    difference) of the `_log_mel` spectrum of ~32 ms frames.

    Args:
        x: (B, T) audio.
        sample_rate: Its rate in Hz.

    Returns:
        (B, F − 1) envelope (nats per frame; 0 for silence or a steady sound) and its frame
        rate in Hz (125 at 16 kHz).
    """
    n_fft = _fft_size(sample_rate, ONSET_SECONDS)
    mel = _log_mel(_frames(x.float(), n_fft), n_fft, sample_rate)  # (B, F, N_MELS)
    return mel.diff(dim=1).clamp_min(0.0).mean(2), sample_rate / (n_fft // 4)


def _autocorrelation(envelope: torch.Tensor) -> torch.Tensor:
    """(B, F) -> (B, F) autocorrelation of the mean-removed envelope, 1 at lag 0 (0 for a
    constant envelope); biased (sums over the overlap), so long lags count less."""
    x = envelope.double() - envelope.double().mean(1, keepdim=True)
    n = 1 << (2 * x.shape[1] - 1).bit_length()
    spectrum = torch.fft.rfft(x, n, dim=1)
    acf = torch.fft.irfft(spectrum.abs().pow(2), n, dim=1)[:, : x.shape[1]]
    return acf / acf[:, :1].clamp_min(1e-20)


def tempo(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Dominant beat rate, from the onset envelope's autocorrelation.

    Lags from 60 / 240 s up to 60 / 40 s (at most half the clip) are scored by their
    autocorrelation times a log-normal prior around 120 BPM (σ = 1 octave, as in librosa);
    the best lag is refined by a parabola through its neighbours.

    Args:
        x: (B, T) audio.
        sample_rate: Its rate in Hz.

    Returns:
        (B,) beats per minute within `TEMPO_RANGE_BPM`; a clip without onsets (silence, a
        drone) gets the prior's 120.
    """
    envelope, rate = onset_envelope(x, sample_rate)
    acf = _autocorrelation(envelope).clamp_min(0.0)  # (B, F)
    shortest = max(1, math.floor(60.0 * rate / TEMPO_RANGE_BPM[1]))
    longest = max(shortest + 2, min(math.ceil(60.0 * rate / TEMPO_RANGE_BPM[0]), acf.shape[1] // 2))
    lags = torch.arange(shortest, longest + 1, dtype=torch.float64)
    prior = torch.exp(
        -0.5 * (torch.log2(60.0 * rate / lags / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2
    )
    acf = torch.nn.functional.pad(acf, (0, max(0, longest + 2 - acf.shape[1])))
    score = (acf[:, shortest : longest + 1] + 1e-9) * prior  # (B, L)
    best = score.argmax(1).clamp(1, len(lags) - 2)
    left, mid, right = (score.gather(1, (best + k)[:, None])[:, 0] for k in (-1, 0, 1))
    curve = left - 2 * mid + right
    step = torch.where(curve < 0, 0.5 * (left - right) / curve.clamp_max(-1e-20), 0.0)
    lag = lags[best] + step.clamp(-0.5, 0.5)
    return (60.0 * rate / lag).clamp(*TEMPO_RANGE_BPM).float()


def onset_rate(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Onsets per second: peaks of `onset_envelope` that are its maximum within ±50 ms and
    exceed its mean plus half its standard deviation.

    Args:
        x: (B, T) audio.
        sample_rate: Its rate in Hz.

    Returns:
        (B,) onsets per second of audio (0 for silence or a steady sound).
    """
    envelope, rate = onset_envelope(x, sample_rate)
    reach = max(1, round(ONSET_GAP_SECONDS * rate))
    local_max = torch.nn.functional.max_pool1d(envelope[:, None], 2 * reach + 1, 1, reach)[:, 0]
    threshold = envelope.mean(1, keepdim=True) + 0.5 * envelope.std(1, keepdim=True)
    peaks = (envelope >= local_max) & (envelope > threshold) & (envelope > 1e-6)
    return peaks.sum(1).float() * sample_rate / x.shape[1]


def spectral_envelope(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Timbre: orthonormal DCT-II coefficients 1..13 of the time-averaged 40-band log-mel
    spectrum in dB (~64 ms frames); c0, the overall level, is left out.

    Args:
        x: (B, T) audio.
        sample_rate: Its rate in Hz.

    Returns:
        (B, 13) in dB; the Euclidean distance between two rows ÷ √40 is the RMS over bands of
        the difference of their (smoothed, level-free) spectral envelopes.
    """
    n_fft = analysis_fft(sample_rate)
    mean_db = 10.0 / math.log(10.0) * _log_mel(_frames(x.float(), n_fft), n_fft, sample_rate)
    mean_db = mean_db.mean(1)  # (B, N_MELS)
    n = torch.arange(N_MELS, dtype=torch.float64)
    k = torch.arange(1, N_ENVELOPE + 1, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi / N_MELS * (n + 0.5) * k) * math.sqrt(2.0 / N_MELS)  # (13, 40)
    return mean_db @ basis.T.float()


def _key_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 − Pearson correlation of chroma rows (B, 12): 0 same profile, ≈ 1 unrelated."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    norm = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return 1.0 - (a * b).sum(1) / norm


def periodicity(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """The onset envelope's autocorrelation on a log-lag axis, for comparing tempi.

    The unbiased autocorrelation (each lag's sum divided by its overlap) of the mean-removed
    `onset_envelope` is read at lags 0.15 s · 2^(i / 24), i = 0, 1, ..., up to min(2 s, half the
    clip), by linear interpolation; a moving average over ±half an octave is subtracted, so
    only peaks (periodicities) remain, not the overall decay. Playing a clip r times faster
    shifts this profile by −24 · log2(r) steps and changes little else.

    Args:
        x: (B, T) audio.
        sample_rate: Its rate in Hz.

    Returns:
        (B, L) profile, L ≥ 2 growing with T (62 for clips of 4 s and more; step i is the lag
        0.15 s · 2^(i / 24)). All zeros for a clip without onsets.
    """
    envelope, rate = onset_envelope(x, sample_rate)
    acf = _autocorrelation(envelope)  # (B, F)
    count = acf.shape[1]
    acf = acf * count / (count - torch.arange(count, dtype=torch.float64)).clamp_min(1.0)
    shortest, longest = PERIODICITY_SECONDS[0] * rate, min(PERIODICITY_SECONDS[1] * rate, count / 2)
    steps = max(2, math.floor(STEPS_PER_OCTAVE * math.log2(max(longest / shortest, 1.0))) + 1)
    lags = shortest * 2.0 ** (torch.arange(steps, dtype=torch.float64) / STEPS_PER_OCTAVE)
    below = lags.floor().long().clamp_max(count - 2)
    frac = lags - below
    profile = acf[:, below] * (1 - frac) + acf[:, below + 1] * frac  # (B, L)
    half = STEPS_PER_OCTAVE // 2
    trend = torch.nn.functional.avg_pool1d(
        profile[:, None], 2 * half + 1, 1, half, count_include_pad=False
    )[:, 0]
    return (profile - trend).float()


def _shifted_correlations(a: torch.Tensor, b: torch.Tensor, reach: int) -> torch.Tensor:
    """Pearson correlation of a[:, i] with b[:, i + s] over their overlap, s = −reach..reach.

    Args:
        a, b: (B, La) and (B, Lb) profiles.
        reach: Largest |shift| in steps.

    Returns:
        (B, 2 · reach + 1); −1 where the overlap is under half an octave (and under the
        shorter profile), 0 where either side is constant.
    """
    needed = min(STEPS_PER_OCTAVE // 2, a.shape[1], b.shape[1])
    out = torch.full((len(a), 2 * reach + 1), -1.0, dtype=torch.float64)
    for column, shift in enumerate(range(-reach, reach + 1)):
        start, stop = max(0, -shift), min(a.shape[1], b.shape[1] - shift)
        if stop - start < needed:
            continue
        u = a[:, start:stop].double()
        v = b[:, start + shift : stop + shift].double()
        u, v = u - u.mean(1, keepdim=True), v - v.mean(1, keepdim=True)
        out[:, column] = (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1)).clamp_min(1e-20)
    return out


def tempo_change(
    primers: torch.Tensor, continuations: torch.Tensor, sample_rate: int
) -> torch.Tensor:
    """log2 of how much faster each continuation goes than its primer, by aligning their
    `periodicity` profiles.

    The profile of the continuation is slid along the primer's by up to half an octave each
    way (ratios 0.71–1.41) in 1/24-octave steps; the shift with the highest correlation,
    refined by a parabola through its neighbours, is the answer. The whole pattern of
    periodicities (beat, bar, subdivisions) takes part, so the answer does not depend on which
    of them a tempo estimate would call the beat; the price is that a tempo change beyond
    ±half an octave is seen as a smaller one. A tie (a clip without onsets) gives 0.

    Args:
        primers: (B, P) audio.
        continuations: (B, T) audio.
        sample_rate: Their rate in Hz.

    Returns:
        (B,) in octaves, within ±0.5: +0.25 for a continuation 19 % faster (2^0.25 = 1.19).
    """
    a, b = periodicity(primers, sample_rate), periodicity(continuations, sample_rate)
    reach = round(MAX_TEMPO_CHANGE_OCTAVES * STEPS_PER_OCTAVE)
    shifts = torch.arange(-reach, reach + 1, dtype=torch.float64)
    score = _shifted_correlations(a, b, reach) - 1e-9 * shifts.abs()  # ties go to no change
    best = score.argmax(1)
    inner = best.clamp(1, 2 * reach - 1)
    left, mid, right = (score.gather(1, (inner + k)[:, None])[:, 0] for k in (-1, 0, 1))
    curve = left - 2 * mid + right
    step = torch.where(curve < 0, 0.5 * (left - right) / curve.clamp_max(-1e-20), 0.0)
    step = torch.where(best == inner, step.clamp(-0.5, 0.5), 0.0)
    return (-(shifts[best] + step) / STEPS_PER_OCTAVE).float()


def continuity(
    primers: torch.Tensor, continuations: torch.Tensor, sample_rate: int
) -> dict[str, torch.Tensor]:
    """How far each continuation strays from its own primer.

    Args:
        primers: (B, P) audio, P ≥ 0.5 s.
        continuations: (B, T) audio, T ≥ 0.5 s; row i continues primer i.
        sample_rate: Their rate in Hz.

    Returns:
        Each (B,), ≥ 0, ≈ 0 for a continuation that keeps the primer's character:
        "key"     1 − Pearson correlation of the `chroma` profiles (0–2): the same key ≈ 0,
                  a transposition by 3 semitones ≈ 1 (a diatonic scale shares 4 of its 7
                  notes with it, about what chance gives); 1 when a clip has no pitch content.
        "tempo"   |`tempo_change`| in octaves (0–0.5): 19 % faster or slower is 0.25; 0 when
                  a clip has no onsets. Not the ratio of two `tempo` estimates: on real music
                  those often lock onto different metrical levels (half, double, 2/3 of the
                  beat) of the same music, and tell a 19 % change in only 70–80 % of primers.
        "timbre"  RMS over mel bands of the difference of the `spectral_envelope`s (dB).
        "level"   |difference| of the RMS levels (dB).
    """
    if primers.dim() != 2 or continuations.dim() != 2 or len(primers) != len(continuations):
        raise ValueError(
            f"need (B, P) primers and (B, T) continuations, got {tuple(primers.shape)} and "
            f"{tuple(continuations.shape)}"
        )
    a = checked_clips(primers, sample_rate, "primers")
    b = checked_clips(continuations, sample_rate, "continuations")
    timbre = (spectral_envelope(a, sample_rate) - spectral_envelope(b, sample_rate)).norm(dim=1)
    return {
        "key": _key_distance(chroma(a, sample_rate), chroma(b, sample_rate)),
        "tempo": tempo_change(a, b, sample_rate).abs(),
        "timbre": timbre / math.sqrt(N_MELS),
        "level": (rms_dbfs(a) - rms_dbfs(b)).abs(),
    }
