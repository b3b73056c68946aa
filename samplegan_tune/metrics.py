"""Offline audio-quality metrics: a set of generated clips (B, T) against real clips (N, T).

Nothing is downloaded: features are log-mel frames (`LogMelEmbedding`) unless the user gives a
TorchScript model (`TorchScriptEmbedding`). Real-side statistics are computed once into a
`RealReference` (cached on disk by `reference_for`); `evaluate_clips` compares a generated set
with it. Every value is a finite float or None, with the reason in a parallel dict.

Metrics ("quality/*"; lower is better except `fad_inf_r2` and `diversity_ratio`):
    fd               Fréchet distance between Gaussians fitted to generated and real frames.
    fad_inf          FAD∞ as in fadtk: FD of random subsets of the generated frames at 10 sizes
                     N, least-squares fit FD = a + b / N, the intercept a; `fad_inf_r2` is the
                     fit's R². Needs ≥ 2 clips and ≥ 2 (D + 1) frames.
    kid              unbiased MMD², kernel (x·y / E + 1)³, on (E,) clip embeddings; averaged
                     over 50 random subsets of 100 when a side is larger. Needs ≥ 4 clips a side.
    ndb_k            share of k-means bins (fitted on real frames) whose share of generated
                     frames differs from the real share (z-test, α = 0.05; see `ndb_k`).
    flatness         median per-frame spectral flatness (white noise ≈ 0.56, tone ≈ 0).
    loudness_dbfs    mean RMS level of the generated clips; `loudness_gap_db` its distance
                     from the real clips' mean level.
    stft_distance    mean |difference| (nats) of the set-average log-magnitude spectra at FFT
                     sizes 256, 512 and 1024 (clips are unpaired, so sets are compared).
    diversity_ratio  mean pairwise distance between generated clip embeddings ÷ that between
                     real ones (1 = as varied as real; 0 = one clip repeated). Needs 2 clips.
    repetition       how far each clip is from repeating itself: per clip, the smallest over
                     lags from one window (~64 ms) to min(2 s, half the clip) of the RMS distance
                     between `time_frames` that lag apart; the generated clips' mean ÷ the real
                     clips' mean (1 = as varied as the music, 0 = an exact loop of any period).
                     The frames' 2 ms hop and the search over every lag make it independent of
                     the segment length and the STFT hop (see `timefeatures`).
    spectral_change  per clip, the median RMS distance between `time_frames` ~32 ms apart; the
                     generated mean ÷ the real mean (≈ 0: a frozen spectrum, a drone, a loop
                     shorter than a window).
    noise_spread     does the noise matter? The same primers rolled out with K ≥ 2 noise seeds:
                     the mean RMS distance between time-aligned frames of two seeds' rollouts
                     of one primer ÷ the same distance between real clips of different primers
                     (0 = one output per context, whatever the noise). Only when rollouts with
                     other seeds are given (`evaluate_clips(reseeded=...)`; training and
                     ranking do, `samplegan-tune evaluate` cannot).
KID, NDB and diversity see features centred on the real mean and divided by the real RMS
spread, so the kernel and the bins work at unit scale whatever the embedding. The last three
always use the fixed log-mel `time_frames`, whatever the embedding: they need a fine time axis.

quality/score, LOWER = BETTER (0: indistinguishable from the real set):
    score = log1p(10 · max(FAD∞, 0) / tr Σ_real) + log1p(max(KID, 0)) + NDB/K
            + 10 · max(0, flatness − flatness_real) + loudness_gap_db / 10
            + stft_distance + 5 · max(0, 1 − diversity_ratio)²
            + 10 · max(0, 1 − repetition)² + 5 · max(0, 1 − spectral_change)²
            + 10 · max(0, 1 − noise_spread / 0.5)²
Σ_real is the real frames' covariance, so the first term does not depend on the features'
units; the squared shortfalls shrug off the spread between real sets (ratios of 0.5–1.5) but
charge a repeated clip, a loop, a frozen spectrum or ignored noise in full. Spectrum
statistics alone rank a loop of real audio close to real music: the repetition term is what
puts every loop clearly behind it. Seeds need only differ half as much as different real
passages: a good model may well continue one primer in similar ways. FD stands in for FAD∞
when FAD∞ is unavailable; other unavailable terms count 0 (named in the reasons).
Calibration on known failures: docs/metrics_calibration.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from samplegan_tune.audio import rms_dbfs
from samplegan_tune.features import (
    LOAD_ERRORS,
    Embedding,
    LogMelEmbedding,
    bin_shares,
    checked_clips,
    embed_clips,
    fad_inf,
    frechet_distance,
    gaussian,
    kid,
    kmeans,
    mean_log_spectra,
    mean_pairwise_distance,
    median_flatness,
    ndb_k,
    psd_sqrt,
    stft_distance,
    tail_statistics,
)
from samplegan_tune.fileio import atomic_path
from samplegan_tune.timefeatures import (
    cross_spread,
    repetition,
    seed_spread,
    spectral_change,
    time_frames,
)

FD, FAD_INF, FAD_INF_R2 = "quality/fd", "quality/fad_inf", "quality/fad_inf_r2"
KID, NDB_K, FLATNESS = "quality/kid", "quality/ndb_k", "quality/flatness"
LOUDNESS, LOUDNESS_GAP = "quality/loudness_dbfs", "quality/loudness_gap_db"
STFT_DISTANCE, DIVERSITY = "quality/stft_distance", "quality/diversity_ratio"
REPETITION, CHANGE = "quality/repetition", "quality/spectral_change"
NOISE_SPREAD, SCORE = "quality/noise_spread", "quality/score"
METRICS = (FAD_INF, FAD_INF_R2, FD, KID, NDB_K, FLATNESS, LOUDNESS, LOUDNESS_GAP, STFT_DISTANCE,
           DIVERSITY, REPETITION, CHANGE, NOISE_SPREAD, SCORE)  # fmt: skip
"""Every metric `evaluate_clips` reports, in display order."""

KID_MIN_CLIPS = 4
SCORE_WEIGHTS = {DIVERSITY: 5.0, REPETITION: 10.0, CHANGE: 5.0, NOISE_SPREAD: 10.0}
"""Weights of the squared shortfalls in `quality_score`."""
NOISE_SPREAD_TARGET = 0.5  # seeds differing half as much as different real passages is enough
_REFERENCE_VERSION = 2


# --------------------------------------------------------------------------- the real side


@dataclass(frozen=True, eq=False)  # eq=False: tensor fields make == ambiguous
class RealReference:
    """Everything real-side, computed once by `from_clips`; `save`/`load` as plain tensors.

    Shapes: N real clips of F frames, D-dim frames, E-dim clip embeddings, k NDB bins.
    """

    sample_rate: int
    embedding_id: str
    num_clips: int
    frames_per_clip: int
    frame_mean: torch.Tensor  # (D,) float64
    frame_cov: torch.Tensor  # (D, D)
    frame_cov_sqrt: torch.Tensor  # (D, D)
    frame_scale: float  # RMS spread of the frames; NDB bins live in (frame − mean) / scale
    clip_mean: torch.Tensor  # (E,)
    clip_scale: float  # likewise for KID and diversity
    clip_embeddings: torch.Tensor  # (N, E), standardised
    centroids: torch.Tensor  # (k, D) k-means bins; k = 0 when too few frames for NDB
    bin_shares: torch.Tensor  # (N, k) each clip's share of frames per bin
    flatness: float  # median per-frame spectral flatness
    loudness_dbfs: float  # mean clip RMS level
    spectra: dict[int, torch.Tensor]  # `mean_log_spectra`
    pairwise_distance: float | None  # mean between standardised clip embeddings; None if N = 1
    tail: dict[str, torch.Tensor]  # `tail_statistics`, each (N,)
    repetition: torch.Tensor  # (N,) `timefeatures.repetition` of each clip
    change: torch.Tensor  # (N,) `timefeatures.spectral_change` of each clip
    cross_spread: float | None  # `timefeatures.cross_spread` between clips; None if N = 1
    embedding: Embedding = field(repr=False)  # not saved: `load` rebuilds or is given it

    @classmethod
    def from_clips(
        cls,
        clips: torch.Tensor,
        sample_rate: int,
        embedding: Embedding | None = None,
        ndb_bins: int = 16,
        seed: int = 0,
    ) -> RealReference:
        """Real-side statistics of `clips` (N, T) at `sample_rate`; log-mel features by default.

        NDB gets min(ndb_bins, frames / 20) k-means bins, or none (NDB unavailable) below 2.
        """
        clips = checked_clips(clips, sample_rate, "real clips")
        embedding = embedding or LogMelEmbedding(sample_rate)
        frames, clip_emb = embed_clips(embedding, clips)  # (N, F, D), (N, E)
        flat = frames.reshape(-1, frames.shape[-1]).double()
        mean, cov = gaussian(flat) if len(flat) > 1 else (flat[0], torch.diag(flat[0] * 0))
        frame_scale, clip_scale = _spread(flat), _spread(clip_emb)
        bins = min(ndb_bins, len(flat) // 20)
        standard = (frames.double() - mean) / frame_scale
        centroids = kmeans(standard.reshape(len(flat), -1), bins, seed) if bins > 1 else None
        clip_std = (clip_emb.double() - clip_emb.double().mean(0)) / clip_scale
        timed = time_frames(clips, sample_rate)  # (N, F', 64)
        return cls(
            sample_rate=int(sample_rate), embedding_id=embedding.id, num_clips=len(clips),
            frames_per_clip=frames.shape[1], frame_mean=mean, frame_cov=cov,
            frame_cov_sqrt=psd_sqrt(cov), frame_scale=frame_scale,
            clip_mean=clip_emb.double().mean(0), clip_scale=clip_scale, clip_embeddings=clip_std,
            centroids=centroids if bins > 1 else torch.zeros(0, flat.shape[1]),
            bin_shares=bin_shares(standard, centroids) if bins > 1 else torch.zeros(len(clips), 0),
            flatness=median_flatness(clips, sample_rate),
            loudness_dbfs=float(rms_dbfs(clips).mean()), spectra=mean_log_spectra(clips),
            pairwise_distance=mean_pairwise_distance(clip_std) if len(clips) > 1 else None,
            tail=tail_statistics(clips, sample_rate), repetition=repetition(timed, sample_rate),
            change=spectral_change(timed), cross_spread=cross_spread(timed), embedding=embedding,
        )  # fmt: skip

    def save(self, path: str | Path) -> None:
        """Write every field but the embedding with `torch.save`, atomically."""
        blob = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embedding"}
        with atomic_path(path) as tmp:
            torch.save({"version": _REFERENCE_VERSION, **blob}, tmp)

    @classmethod
    def load(cls, path: str | Path, embedding: Embedding | None = None) -> RealReference:
        """Read a saved reference; `embedding` (default log-mel) must be the one it was made
        with. Raises ValueError for another version or embedding."""
        blob = torch.load(path, weights_only=True)
        if blob.pop("version", None) != _REFERENCE_VERSION:
            raise ValueError(f"{path}: not a reference of version {_REFERENCE_VERSION}")
        embedding = embedding or LogMelEmbedding(blob["sample_rate"])
        if embedding.id != blob["embedding_id"]:
            raise ValueError(f"{path}: made with {blob['embedding_id']}, not {embedding.id}")
        return cls(**blob, embedding=embedding)


def _spread(x: torch.Tensor) -> float:
    """RMS over dimensions of the per-dimension std of (N, D); 1.0 when that is 0."""
    spread = float(x.double().var(0, correction=0).mean().sqrt())
    return spread if spread > 1e-12 else 1.0


def reference_for(
    clips: torch.Tensor,
    sample_rate: int,
    cache_dir: str | Path,
    key: str,
    embedding: Embedding | None = None,
) -> RealReference:
    """`RealReference.from_clips(clips (N, T), ...)`, cached in `cache_dir`.

    The file name holds `key` (a readable label, e.g. the dataset) and a hash of the clips, the
    rate and the embedding, so changed audio or settings never reuse a stale file. A file that
    cannot be read is rebuilt.
    """
    embedding = embedding or LogMelEmbedding(sample_rate)
    settings = [_REFERENCE_VERSION, key, int(sample_rate), embedding.id, list(clips.shape)]
    digest = hashlib.sha256(json.dumps(settings).encode())
    digest.update(clips.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)[:40]
    path = Path(cache_dir).expanduser() / f"reference-{label}-{digest.hexdigest()[:24]}.pt"
    if path.is_file():
        try:
            return RealReference.load(path, embedding)
        except LOAD_ERRORS:
            pass  # rebuilt below
    reference = RealReference.from_clips(clips, sample_rate, embedding)
    reference.save(path)
    return reference


# --------------------------------------------------------------------------- evaluation


def evaluate_clips(
    generated: torch.Tensor, reference: RealReference, reseeded: torch.Tensor | None = None
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of `generated` (B, T) against `reference`, at the reference's rate.

    Args:
        generated: (B, T) rollouts, one per primer.
        reference: the real side.
        reseeded: (K − 1, B', T) or (B', T): the first B' ≤ B primers rolled out again with
            other noise seeds, for `noise_spread`; None leaves it unavailable.

    Returns:
        values: each name of `METRICS` -> a finite float, or None when unavailable;
        reasons: name -> why, for each None (and for a score with terms left out).
    """
    gen = checked_clips(generated, reference.sample_rate, "generated clips")
    frames, clip_emb = embed_clips(reference.embedding, gen)  # (B, F, D), (B, E)
    values: dict[str, float | None] = dict.fromkeys(METRICS)
    reasons: dict[str, str] = {}
    _frechet_metrics(frames, reference, values, reasons)
    clip_std = (clip_emb.double() - reference.clip_mean) / reference.clip_scale
    if min(len(gen), reference.num_clips) < KID_MIN_CLIPS:
        reasons[KID] = f"needs ≥ {KID_MIN_CLIPS} generated and real clips"
    else:
        values[KID] = kid(clip_std, reference.clip_embeddings)
    if len(gen) < 2 or reference.pairwise_distance is None:
        reasons[DIVERSITY] = reasons[NDB_K] = "needs ≥ 2 generated and real clips"
    elif reference.pairwise_distance < 1e-12:
        reasons[DIVERSITY] = "the real clips are all identical"
    else:
        values[DIVERSITY] = mean_pairwise_distance(clip_std) / reference.pairwise_distance
    if len(reference.centroids) < 2:
        real_frames = reference.num_clips * reference.frames_per_clip
        reasons[NDB_K] = f"needs ≥ 40 real frames (20 a bin), got {real_frames}"
    elif NDB_K not in reasons:  # 2 clips a side, for a variance of the bin shares
        shares = bin_shares((frames.double() - reference.frame_mean) / reference.frame_scale,
                            reference.centroids)  # fmt: skip
        per_clip = min(frames.shape[1], reference.frames_per_clip)
        values[NDB_K] = ndb_k(shares, reference.bin_shares, per_clip)
    values[FLATNESS] = median_flatness(gen, reference.sample_rate)
    values[LOUDNESS] = float(rms_dbfs(gen).mean())
    values[LOUDNESS_GAP] = abs(values[LOUDNESS] - reference.loudness_dbfs)
    values[STFT_DISTANCE] = stft_distance(mean_log_spectra(gen), reference.spectra)
    _time_metrics(gen, reseeded, reference, values, reasons)
    values[SCORE] = quality_score(values, reference, reasons)
    return values, reasons


def _time_metrics(
    gen: torch.Tensor,
    reseeded: torch.Tensor | None,
    reference: RealReference,
    values: dict[str, float | None],
    reasons: dict[str, str],
) -> None:
    """Repetition, spectral change and noise spread of checked clips `gen` (B, T)."""
    frames = time_frames(gen, reference.sample_rate)  # (B, F, 64)
    measured = {
        REPETITION: (repetition(frames, reference.sample_rate), reference.repetition),
        CHANGE: (spectral_change(frames), reference.change),
    }
    for name, (ours, real) in measured.items():
        if float(real.mean()) < 1e-6:
            reasons[name] = "the real clips do not change at all"
        else:
            values[name] = float(ours.mean() / real.mean())
    if reseeded is None:
        reasons[NOISE_SPREAD] = "needs rollouts of the same primers with other noise seeds"
        return
    others = checked_clips(reseeded.reshape(-1, reseeded.shape[-1]), reference.sample_rate,
                           "reseeded clips").reshape(-1, *reseeded.shape[-2:])  # fmt: skip
    if len(others[0]) > len(gen):
        raise ValueError(f"reseeded: {len(others[0])} primers, but only {len(gen)} generated")
    groups = torch.cat([gen[None, : others.shape[1]], others])  # (K, B', T)
    spread = noise_spread(groups, reference)
    if spread is None:
        reasons[NOISE_SPREAD] = "needs ≥ 2 real clips that differ"
    values[NOISE_SPREAD] = spread


def noise_spread(groups: torch.Tensor, reference: RealReference) -> float | None:
    """`quality/noise_spread` (module docstring) of primers rolled out with several seeds.

    Args:
        groups: (K, B, T), K ≥ 2: rollout k of primer b with noise seed k.
        reference: gives the spread between real clips of different primers.

    Returns:
        0 when every seed gave the same audio, ≈ 1 when seeds differ as much as different
        real passages; None when the real clips give no spread to compare with.
    """
    if groups.dim() != 3 or len(groups) < 2:
        raise ValueError(f"noise_spread: need (K ≥ 2, B, T) clips, got {tuple(groups.shape)}")
    if not reference.cross_spread or reference.cross_spread < 1e-6:
        return None
    flat = groups.reshape(-1, groups.shape[-1]).float()
    frames = time_frames(flat, reference.sample_rate)  # (K · B, F, 64)
    frames = frames.reshape(*groups.shape[:2], *frames.shape[1:])  # (K, B, F, 64)
    return seed_spread(frames) / reference.cross_spread


def _frechet_metrics(
    frames: torch.Tensor,
    reference: RealReference,
    values: dict[str, float | None],
    reasons: dict[str, str],
) -> None:
    """FD and FAD∞ of generated `frames` (B, F, D) into `values`, or why not into `reasons`."""
    flat = frames.reshape(-1, frames.shape[-1]).double()
    real = (reference.frame_mean, reference.frame_cov)
    if len(flat) < 2 or reference.num_clips * reference.frames_per_clip < 2:
        reasons[FD] = "needs ≥ 2 generated and real frames"
    else:
        values[FD] = frechet_distance(*real, *gaussian(flat), reference.frame_cov_sqrt)
    needed = 2 * (flat.shape[1] + 1)
    if len(frames) < 2 or len(flat) < needed or FD in reasons:
        reasons[FAD_INF] = reasons[FAD_INF_R2] = (
            f"needs ≥ 2 generated clips and ≥ {needed} frames, got {len(frames)} and {len(flat)}"
        )
    else:
        values[FAD_INF], values[FAD_INF_R2] = fad_inf(flat, *real, reference.frame_cov_sqrt)


def quality_score(
    values: dict[str, float | None], reference: RealReference, reasons: dict[str, str]
) -> float | None:
    """`quality/score` (module docstring; lower = better) from the other `values`. None when
    neither FAD∞ nor FD is available; terms left out are named in `reasons[SCORE]`."""
    frechet = values[FD] if values[FAD_INF] is None else values[FAD_INF]
    if frechet is None:
        reasons[SCORE] = "needs FAD∞ or FD"
        return None
    total_variance = max(float(reference.frame_cov.trace()), 1e-12)
    kid_value = values[KID]
    terms = {
        FAD_INF: math.log1p(10 * max(frechet, 0.0) / total_variance),
        KID: None if kid_value is None else math.log1p(max(kid_value, 0.0)),
        NDB_K: values[NDB_K],
        FLATNESS: 10 * max(0.0, values[FLATNESS] - reference.flatness),
        LOUDNESS_GAP: values[LOUDNESS_GAP] / 10,
        STFT_DISTANCE: values[STFT_DISTANCE],
        **{name: _shortfall(values, name) for name in SCORE_WEIGHTS},
    }
    missing = [name for name, term in terms.items() if term is None]
    if missing:
        reasons[SCORE] = "partial: left out " + ", ".join(missing)
    return sum(term for term in terms.values() if term is not None)


def _shortfall(values: dict[str, float | None], name: str) -> float | None:
    """`SCORE_WEIGHTS[name]` · max(0, 1 − value / target)², target 1 (0.5 for noise)."""
    value = values[name]
    if value is None:
        return None
    target = NOISE_SPREAD_TARGET if name == NOISE_SPREAD else 1.0
    return SCORE_WEIGHTS[name] * max(0.0, 1.0 - value / target) ** 2
