"""Metrics on the pretrained music embedding (`musicnn`): how far a set of clips is from real
music as a music-tagging network hears it.

Each musicnn patch covers 3 s; clips are cut into overlapping patches (`HOP_SECONDS` apart), so
an 8-s clip gives 6 patches and a 4-s clip 2. Clips shorter than one patch (2.976 s) cannot be
embedded: the metrics are then unavailable (None with a reason), never guessed. Audio at
another rate is resampled to musicnn's 16 kHz first. `shared_embedding` loads the network once
per process.

    music_fd   Fréchet distance between Gaussians fitted to the generated and the real
               patches' 200-d penultimate embeddings (FAD∞-extrapolated when there are at
               least 2 (D + 1) generated patches, else the plain FD of all of them).
    tag_kl     KL(real ‖ generated) between the two sets' tag distributions: each set's mean
               tag probability over its patches, normalised to sum to 1 over the 50 tags
               (as MusicGen reports KL on a tagger's labels), in nats.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF

from samplegan_tune.judge.features import fad_inf, frechet_distance, gaussian, psd_sqrt
from samplegan_tune.judge.metric_names import MUSIC_FD, TAG_KL
from samplegan_tune.judge.musicnn import MIN_SAMPLES, SAMPLE_RATE, MusicEmbedding

HOP_SECONDS = 1.0  # patch hop: an 8-s clip gives 6 overlapping 3-s patches, a 4-s clip 2
_EPS = 1e-6  # tag-probability floor inside the log


@dataclass(frozen=True, eq=False)
class MusicReference:
    """The real side on the music embedding: patch Gaussian and tag distribution."""

    mean: torch.Tensor  # (D,) float64
    cov: torch.Tensor  # (D, D)
    cov_sqrt: torch.Tensor  # (D, D)
    tags: torch.Tensor  # (K,) the real patches' tag distribution, sums to 1
    patches: int
    hop_seconds: float  # the patch hop; generated clips are cut the same way

    @classmethod
    def from_clips(
        cls,
        net: MusicEmbedding,
        clips: torch.Tensor,
        hop_seconds: float = HOP_SECONDS,
        sample_rate: int = SAMPLE_RATE,
    ) -> MusicReference:
        """Real clips (N, T) at `sample_rate`, at least one patch long."""
        embedding, probs = patch_features(net, clips, hop_seconds, sample_rate)
        mean, cov = gaussian(embedding)
        tags = tag_distribution(probs)
        return cls(mean, cov, psd_sqrt(cov), tags, len(embedding), hop_seconds)

    def to_dict(self) -> dict:
        """Plain tensors and numbers, for `torch.save`; `MusicReference(**d)` rebuilds it."""
        return asdict(self)


@functools.cache
def shared_embedding(device: str = "cpu") -> MusicEmbedding:
    """The judge's musicnn (`MusicEmbedding.load()`), built once per process and device."""
    return MusicEmbedding.load(device=device)


def long_enough(samples: int, sample_rate: int) -> bool:
    """Whether clips of `samples` at `sample_rate` hold one musicnn patch."""
    return samples * SAMPLE_RATE >= MIN_SAMPLES * sample_rate


def patch_features(
    net: MusicEmbedding,
    clips: torch.Tensor,
    hop_seconds: float = HOP_SECONDS,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) clips at `sample_rate` -> every patch's embedding (B · P, 200) and tags
    (B · P, 50)."""
    if sample_rate != SAMPLE_RATE:
        clips = AF.resample(clips.float(), sample_rate, SAMPLE_RATE)
    if clips.shape[-1] < MIN_SAMPLES:
        raise ValueError(f"clips of {clips.shape[-1]} samples are shorter than a patch")
    out = net(clips.float(), hop_seconds=hop_seconds)
    return out.embedding.flatten(0, 1).cpu().double(), out.tag_probs.flatten(0, 1).cpu().double()


def tag_distribution(probs: torch.Tensor) -> torch.Tensor:
    """(M, K) tag probabilities -> the set's distribution over tags (K,), sums to 1."""
    mean = probs.mean(0).clamp_min(_EPS)
    return mean / mean.sum()


def music_metrics(
    net: MusicEmbedding, clips: torch.Tensor, reference: MusicReference, sample_rate: int
) -> tuple[dict[str, float | None], dict[str, str]]:
    """`music_fd` and `tag_kl` of generated clips (B, T) against `reference`.

    Returns (values, reasons): each metric a float, or None with the reason.
    """
    values: dict[str, float | None] = {MUSIC_FD: None, TAG_KL: None}
    if not long_enough(clips.shape[-1], sample_rate):
        reason = f"clips of {clips.shape[-1] / sample_rate:.2f} s are shorter than a 3-s patch"
        return values, dict.fromkeys(values, reason)
    embedding, probs = patch_features(net, clips, reference.hop_seconds, sample_rate)
    real = (reference.mean, reference.cov, reference.cov_sqrt)
    if len(embedding) >= 2 * (embedding.shape[1] + 1):
        values[MUSIC_FD] = fad_inf(embedding, *real)[0]
    elif len(embedding) >= 2:
        values[MUSIC_FD] = frechet_distance(
            reference.mean, reference.cov, *gaussian(embedding), reference.cov_sqrt
        )
    real_tags, ours = reference.tags, tag_distribution(probs)
    values[TAG_KL] = float((real_tags * (real_tags / ours).log()).sum())
    reasons = {MUSIC_FD: "needs ≥ 2 patches"} if values[MUSIC_FD] is None else {}
    return values, reasons
