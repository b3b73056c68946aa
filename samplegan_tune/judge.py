"""`quality/score`: one number for "how far is this from the music", LOWER = BETTER.

A weighted sum of non-negative terms, each ≈ 0 for real music continuing its own primer:

    term          from the metric (`metrics`, `musicmetrics`)               what it catches
    music_fd      log1p(10 · music_fd / tr Σ_music)                          not music to a tagger
    tag_kl        log1p(20 · tag_kl)                                         other instruments/genre
    <x>_drift     max(0, log <x>_drift), x = key, tempo, timbre, level       strays from its primer
    repetition    |log repetition|                                           loops / over-busy
    change        |log spectral_change|                                      frozen / jittery, gated
    flatness      |log (flatness ÷ real flatness)|                           static / pure tones
    diversity     |log diversity_ratio|                                      one clip for all
    logmel_fad    log1p(10 · FAD∞ / tr Σ_logmel)  (FD when FAD∞ is n/a)      spectrum statistics
    kid, ndb      log1p(KID), NDB/K                                          idem
    stft          stft_distance                                              the average spectrum
    loudness      loudness_gap_db / 10                                       level
    noise_spread  log of how far outside [0.5, 2] (fixed weight)             ignored noise

Ratios are clamped to [1e-3, 1e3] before the log. The liveliness terms (repetition, change,
flatness, diversity, noise spread) are two-sided: too much is charged like too little, on a log
ratio, so a search cannot climb the score by making the output busier than music.

The weights (`WEIGHTS`) are fitted, not chosen: `benchmarks/calibrate_metrics.py --fit` builds
graded degradations of real continuations (`degrade.graded_cases`) on three genres of real music
and solves a linear programme for the non-negative weights (summing to 1) that keep the
largest margin on every ordering a listener would give: the truth scores best; each family
scores worse as it gets stronger; a continuation at another speed or cut into 50-ms grains
scores ≥ 1.2× the truth, grains of 200 ms worse than the truth; the gross failures (10-ms
grains, gating, a drone, 0 dB noise, static, silence, loops) ≥ 1.5× the truth. The fitted
weights, the margins and the held-out check are in docs/metrics_calibration.md. The noise-spread
term cannot be calibrated on recordings (they have one continuation per primer) and keeps the
weight of the repetition term, its closest relative (both say "the output does not move").

A term whose metric is unavailable (clips shorter than a 3-s musicnn patch, no primers, one
clip) counts 0 and is named in the score's reason; the score is None without any Fréchet
distance.
"""

from __future__ import annotations

import math

from samplegan_tune import metric_names as n

RATIO_CLAMP = 1e-3
TAG_KL_SCALE = 20.0  # nats⁻¹: real continuations sit at tag_kl 0.01–0.07
NOISE_SPREAD_BAND = (0.5, 2.0)  # seeds may differ half to twice as much as real passages

Values = dict[str, "float | None"]


def _log_ratio(value: float | None) -> float | None:
    if value is None:
        return None
    return math.log(min(max(value, RATIO_CLAMP), 1 / RATIO_CLAMP))


def _excess(value: float | None) -> float | None:
    """max(0, log ratio): charged only above 1."""
    ratio = _log_ratio(value)
    return None if ratio is None else max(0.0, ratio)


def _both_ways(value: float | None) -> float | None:
    """|log ratio|: charged above and below 1."""
    ratio = _log_ratio(value)
    return None if ratio is None else abs(ratio)


def _band(value: float | None) -> float | None:
    """How far (in log) the noise spread lies outside `NOISE_SPREAD_BAND`."""
    ratio = _log_ratio(value)
    if ratio is None:
        return None
    low, high = (math.log(b) for b in NOISE_SPREAD_BAND)
    return max(0.0, low - ratio, ratio - high)


def _scaled_log(value: float | None, scale: float) -> float | None:
    return None if value is None else math.log1p(scale * max(value, 0.0))


def terms(values: Values, scales: dict[str, float]) -> dict[str, float | None]:
    """Each term of the score (module docstring), None where its metric is unavailable.

    `scales`: "logmel" and "music" -> tr Σ of the real frames / patches; "flatness" -> the
    real clips' median flatness (`metrics.RealReference.judge_scales`).
    """
    frechet = values[n.FD] if values[n.FAD_INF] is None else values[n.FAD_INF]
    flatness = values[n.FLATNESS]
    relative = None if flatness is None else flatness / max(scales["flatness"], 1e-12)
    kid = values[n.KID]
    out: dict[str, float | None] = {
        "music_fd": _scaled_log(values[n.MUSIC_FD], 10 / scales["music"]),
        "tag_kl": _scaled_log(values[n.TAG_KL], TAG_KL_SCALE),
        **{f"{name}_drift": _excess(values[metric]) for name, metric in n.DRIFTS.items()},
        "repetition": _both_ways(values[n.REPETITION]),
        "change": _both_ways(values[n.CHANGE]),
        "flatness": _both_ways(relative),
        "diversity": _both_ways(values[n.DIVERSITY]),
        "logmel_fad": _scaled_log(frechet, 10 / scales["logmel"]),
        "kid": None if kid is None else math.log1p(max(kid, 0.0)),
        "ndb": values[n.NDB_K],
        "stft": values[n.STFT_DISTANCE],
        "loudness": None if values[n.LOUDNESS_GAP] is None else values[n.LOUDNESS_GAP] / 10,
        "noise_spread": _band(values[n.NOISE_SPREAD]),
    }
    return out


WEIGHTS: dict[str, float] = dict.fromkeys(
    [
        "music_fd",
        "tag_kl",
        "key_drift",
        "tempo_drift",
        "timbre_drift",
        "level_drift",
        "repetition",
        "change",
        "flatness",
        "diversity",
        "logmel_fad",
        "kid",
        "ndb",
        "stft",
        "loudness",
    ],
    1 / 15,
)
"""Fitted by `benchmarks/calibrate_metrics.py --fit` (see the module docstring)."""
WEIGHTS["noise_spread"] = WEIGHTS["repetition"]


def quality_score(
    values: Values, scales: dict[str, float], reasons: dict[str, str]
) -> float | None:
    """`quality/score` from the other `values` (module docstring); None without a Fréchet
    distance. Terms left out are named in `reasons[SCORE]`."""
    if values[n.FD] is None and values[n.FAD_INF] is None and values[n.MUSIC_FD] is None:
        reasons[n.SCORE] = "needs a Fréchet distance (FAD∞, FD or music_fd)"
        return None
    found = terms(values, scales)
    missing = [name for name, term in found.items() if term is None and WEIGHTS[name] > 0]
    if missing:
        reasons[n.SCORE] = "partial: left out " + ", ".join(missing)
    return sum(WEIGHTS[name] * term for name, term in found.items() if term is not None)
