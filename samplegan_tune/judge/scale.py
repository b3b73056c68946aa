"""A scale for `quality/score`: where known references land with the same metrics and the
same settings, so that a score reads as "halfway between real music and a loop".

Computed once per experiment, on primers from the held-out audio the ranking uses, with the
ranking's rollout count and length; each reference continues the same primers:

    real continuation   what really follows each primer (the floor: real against real)
    repeated second     the primer's last second, repeated
    looped segment      the primer's last `segment` samples, looped (the seed's failure)
    white noise         white noise at the primer's level

`position(score)` = (score − real) / (looped − real): 0 = real music, 1 = a loop.
"""

from __future__ import annotations

import math

import torch

from samplegan_tune.audio.corpus import Corpus, WindowSampler
from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.judge.metrics import SCORE, RealReference, evaluate_clips

REAL, REPEATED, LOOPED, NOISE = (
    "real continuation",
    "repeated second",
    "looped segment",
    "white noise",
)
REFERENCES = (REAL, REPEATED, LOOPED, NOISE)
PRIMER_SECONDS = 3.0  # as long as the search's primers (`trial.JUDGE_PRIMER_SECONDS`)
SCALE_SEED = 11  # which held-out windows the references continue


def _tile(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, P) -> (B, length): `x` repeated end to end."""
    reps = math.ceil(length / x.shape[-1])
    return x.repeat(1, reps)[:, :length]


def reference_sets(
    windows: torch.Tensor, primer: int, segment: int, second: int, seed: int = 0
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Each reference's clips (B, T) and a second draw for the noise-spread metric.

    Args:
        windows: (B, primer + T) held-out audio: a primer, then its true continuation.
        primer: samples of primer (PRIMER_SECONDS) at the start of each window.
        segment: the looped reference's period.
        second: samples in a second (the repeated reference's period).
        seed: the white noise's seed.

    A repeat or a loop gives the same clip for every noise seed (second draw = itself); the
    true continuation has no second draw (None).
    """
    head, tail = windows[:, :primer], windows[:, primer:]
    length = tail.shape[-1]
    level = 10 ** (rms_dbfs(head) / 20)  # (B,) the primers' RMS
    rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(2, *tail.shape, generator=rng) * level[None, :, None]
    repeated = _tile(head[:, -min(second, primer) :], length)
    looped = _tile(head[:, -min(segment, primer) :], length)
    return {
        REAL: (tail, None),
        REPEATED: (repeated, repeated),
        LOOPED: (looped, looped),
        NOISE: (noise[0], noise[1]),
    }


def score_scale(
    heldout: Corpus, reference: RealReference, segment: int, rollouts: int, seconds: float
) -> dict[str, float]:
    """Reference name -> its quality/score against `reference` (see the module docstring)."""
    rate = reference.sample_rate
    primer, length = round(PRIMER_SECONDS * rate), round(seconds * rate)
    longest = int(heldout.lengths.max())
    length = min(length, longest - primer)
    windows = WindowSampler(heldout).fixed_windows(rollouts, primer + length, SCALE_SEED)
    scale = {}
    for name, (clips, again) in reference_sets(windows, primer, segment, rate).items():
        values, _ = evaluate_clips(clips, reference, again, primers=windows[:, :primer])
        scale[name] = float(values[SCORE]) if values[SCORE] is not None else math.nan
    return scale


def position(score: float, scale: dict[str, float]) -> float:
    """Where `score` lies between real music (0) and a looped segment (1); NaN if unknown."""
    real, loop = scale.get(REAL, math.nan), scale.get(LOOPED, math.nan)
    if not (math.isfinite(real) and math.isfinite(loop)) or loop <= real:
        return math.nan
    return (score - real) / (loop - real)
