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
    crest_ratio      median peak-to-RMS ratio (`features.crest_factor`) of the generated clips
                     ÷ the real clips' (< 1: clipped or over-compressed, > 1: spiky).
    floor_gap_db     median `features.level_floor` (the quiet frames' level against the typical
                     one) of the generated clips minus the real clips' (> 0: hiss or noise
                     filling the rests; < 0: dropouts, gating).
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

On the pretrained music embedding (`musicmetrics`, clips ≥ 3 s; FAD∞ and tags of musicnn):
    music_fd, tag_kl  see `musicmetrics`.
Continuity with the primer (`continuity`; only when `evaluate_clips` is given the primers and
the reference was built from true (primer, continuation) pairs):
    key_drift, tempo_drift, timbre_drift, level_drift
                     the continuations' mean `continuity` distance from their own primers ÷ the
                     true continuations' (1 = strays as much as the music itself moves on),
                     that at least `DRIFT_FLOORS` (a few primers may keep key or level
                     closely: a ratio to a near-0 mean would magnify noise).

quality/score (LOWER = BETTER) is `judge.quality_score`: its formula, its fitted weights and
why are in samplegan_tune/judge/score.py; calibration: docs/metrics_calibration.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from samplegan_tune.audio.sound import rms_dbfs
from samplegan_tune.core.fileio import atomic_path
from samplegan_tune.judge.continuity import DISTANCES, continuity
from samplegan_tune.judge.features import (
    LOAD_ERRORS,
    Embedding,
    LogMelEmbedding,
    bin_shares,
    checked_clips,
    crest_factor,
    embed_clips,
    fad_inf,
    frechet_distance,
    gaussian,
    kid,
    kmeans,
    level_floor,
    mean_log_spectra,
    mean_pairwise_distance,
    median_flatness,
    ndb_k,
    psd_sqrt,
    stft_distance,
    tail_statistics,
)
from samplegan_tune.judge.metric_names import (  # noqa: F401  (re-exported: readers import them here)
    CHANGE,
    CREST,
    DIVERSITY,
    DRIFTS,
    FAD_INF,
    FAD_INF_R2,
    FD,
    FLATNESS,
    FLOOR,
    KID,
    LOUDNESS,
    LOUDNESS_GAP,
    METRICS,
    MUSIC_FD,
    NDB_K,
    NOISE_SPREAD,
    REPETITION,
    SCORE,
    STFT_DISTANCE,
    TAG_KL,
)
from samplegan_tune.judge.musicmetrics import (
    MusicReference,
    long_enough,
    music_metrics,
    shared_embedding,
)
from samplegan_tune.judge.score import quality_score
from samplegan_tune.judge.timefeatures import (
    cross_spread,
    repetition,
    seed_spread,
    spectral_change,
    time_frames,
)

KID_MIN_CLIPS = 4
_REFERENCE_VERSION = 5
DRIFT_MIN_SECONDS = 0.5  # `continuity` needs this much primer and continuation
DRIFT_FLOORS = {"key": 0.1, "tempo": 0.05, "timbre": 1.5, "level": 2.0}
"""The smallest true-continuation drift a ratio divides by (key: 1 − correlation; tempo:
octaves; timbre, level: dB): what real continuations show at their steadiest (metal, orchestral
game music: key 0.11–0.25, tempo 0.02–0.16, timbre 2.6–3 dB, level 2.2 dB)."""


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
    crest: float  # median `crest_factor` of the clips
    floor_db: float  # median `level_floor` of the clips
    spectra: dict[int, torch.Tensor]  # `mean_log_spectra`
    pairwise_distance: float | None  # mean between standardised clip embeddings; None if N = 1
    tail: dict[str, torch.Tensor]  # `tail_statistics`, each (N,)
    repetition: torch.Tensor  # (N,) `timefeatures.repetition` of each clip
    change: torch.Tensor  # (N,) `timefeatures.spectral_change` of each clip
    cross_spread: float | None  # `timefeatures.cross_spread` between clips; None if N = 1
    music: MusicReference | None  # on musicnn; None for clips shorter than a 3-s patch
    drift: dict[str, float] | None  # the true continuations' mean `continuity` distances
    embedding: Embedding = field(repr=False)  # not saved: `load` rebuilds or is given it

    @classmethod
    def from_clips(
        cls,
        clips: torch.Tensor,
        sample_rate: int,
        embedding: Embedding | None = None,
        ndb_bins: int = 16,
        seed: int = 0,
        primers: torch.Tensor | None = None,
    ) -> RealReference:
        """Real-side statistics of `clips` (N, T) at `sample_rate`; log-mel features by default.

        NDB gets min(ndb_bins, frames / 20) k-means bins, or none (NDB unavailable) below 2.
        `primers` (N, P): the audio just before each clip, so that the clips are true
        continuations; gives the `continuity` baseline of the drift metrics (else none).
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
            sample_rate=int(sample_rate),
            embedding_id=embedding.id,
            num_clips=len(clips),
            frames_per_clip=frames.shape[1],
            frame_mean=mean,
            frame_cov=cov,
            frame_cov_sqrt=psd_sqrt(cov),
            frame_scale=frame_scale,
            clip_mean=clip_emb.double().mean(0),
            clip_scale=clip_scale,
            clip_embeddings=clip_std,
            centroids=centroids if bins > 1 else torch.zeros(0, flat.shape[1]),
            bin_shares=bin_shares(standard, centroids) if bins > 1 else torch.zeros(len(clips), 0),
            flatness=median_flatness(clips, sample_rate),
            loudness_dbfs=float(rms_dbfs(clips).mean()),
            spectra=mean_log_spectra(clips),
            crest=float(crest_factor(clips).median()),
            floor_db=float(level_floor(clips, sample_rate).median()),
            pairwise_distance=mean_pairwise_distance(clip_std) if len(clips) > 1 else None,
            tail=tail_statistics(clips, sample_rate),
            repetition=repetition(timed, sample_rate),
            change=spectral_change(timed),
            cross_spread=cross_spread(timed),
            music=_music_reference(clips, sample_rate),
            embedding=embedding,
            drift=None if primers is None else _true_drift(primers, clips, sample_rate),
        )

    @property
    def judge_scales(self) -> dict[str, float]:
        """What `judge.terms` divides by: tr Σ of the log-mel frames and the music patches,
        the real median flatness."""
        music = 1.0 if self.music is None else float(self.music.cov.trace())
        return {
            "logmel": max(float(self.frame_cov.trace()), 1e-12),
            "music": max(music, 1e-12),
            "flatness": self.flatness,
        }

    def save(self, path: str | Path) -> None:
        """Write every field but the embedding with `torch.save`, atomically."""
        blob = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embedding"}
        blob["music"] = None if self.music is None else self.music.to_dict()
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
        music = blob.pop("music")
        return cls(
            **blob, music=None if music is None else MusicReference(**music), embedding=embedding
        )


def _music_reference(clips: torch.Tensor, sample_rate: int) -> MusicReference | None:
    if not long_enough(clips.shape[-1], sample_rate):
        return None
    return MusicReference.from_clips(shared_embedding(), clips, sample_rate=sample_rate)


def _drift_ready(primers: torch.Tensor, clips: torch.Tensor, sample_rate: int) -> bool:
    """Whether primers and clips are long enough for `continuity` (half a second each)."""
    return min(primers.shape[-1], clips.shape[-1]) >= DRIFT_MIN_SECONDS * sample_rate


def _true_drift(
    primers: torch.Tensor, clips: torch.Tensor, sample_rate: int
) -> dict[str, float] | None:
    """The mean `continuity` distance of each true continuation from its primer."""
    if not _drift_ready(primers, clips, sample_rate):
        return None
    distances = continuity(primers, clips, sample_rate)
    return {name: float(distances[name].mean()) for name in DISTANCES}


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
    primers: torch.Tensor | None = None,
) -> RealReference:
    """`RealReference.from_clips(clips (N, T), ..., primers=primers)`, cached in `cache_dir`.

    The file name holds `key` (a readable label, e.g. the dataset) and a hash of the clips, the
    primers, the rate and the embedding, so changed audio or settings never reuse a stale file.
    A file that cannot be read is rebuilt.
    """
    embedding = embedding or LogMelEmbedding(sample_rate)
    shapes = [list(x.shape) for x in (clips, primers) if x is not None]
    settings = [_REFERENCE_VERSION, key, int(sample_rate), embedding.id, shapes]
    digest = hashlib.sha256(json.dumps(settings).encode())
    for audio in (clips, primers) if primers is not None else (clips,):
        digest.update(audio.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)[:40]
    path = Path(cache_dir).expanduser() / f"reference-{label}-{digest.hexdigest()[:24]}.pt"
    if path.is_file():
        try:
            return RealReference.load(path, embedding)
        except LOAD_ERRORS:
            pass  # rebuilt below
    reference = RealReference.from_clips(clips, sample_rate, embedding, primers=primers)
    reference.save(path)
    return reference


# --------------------------------------------------------------------------- evaluation


def evaluate_clips(
    generated: torch.Tensor,
    reference: RealReference,
    reseeded: torch.Tensor | None = None,
    primers: torch.Tensor | None = None,
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of `generated` (B, T) against `reference`, at the reference's rate.

    Args:
        generated: (B, T) rollouts, one per primer.
        reference: the real side.
        reseeded: (K − 1, B', T) or (B', T): the first B' ≤ B primers rolled out again with
            other noise seeds, for `noise_spread`; None leaves it unavailable.
        primers: (B, P) the audio each row of `generated` continues, for the drift metrics;
            None (or a reference without true continuations) leaves them unavailable.

    Returns:
        values: each name of `METRICS` -> a finite float, or None when unavailable;
        reasons: name -> why, for each None (and for a score with terms left out).
    """
    gen = checked_clips(generated, reference.sample_rate, "generated clips")
    frames, clip_emb = embed_clips(reference.embedding, gen)  # (B, F, D), (B, E)
    found = _Evaluation(gen, reference)
    found.frechet(frames)
    found.clip_set(frames, clip_emb)
    found.level()
    found.time(reseeded)
    found.music()
    found.drift(primers)
    found.values[SCORE] = quality_score(found.values, reference.judge_scales, found.reasons)
    return found.values, found.reasons


@dataclass
class _Evaluation:
    """One evaluation of checked clips `gen` (B, T) against `reference`: what it has found so
    far, `values` (each name of `METRICS`, None until measured) and `reasons` (name -> why it
    stays None). Each method measures one family of metrics."""

    gen: torch.Tensor
    reference: RealReference
    values: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(METRICS))
    reasons: dict[str, str] = field(default_factory=dict)

    def frechet(self, frames: torch.Tensor) -> None:
        """FD and FAD∞ of the generated `frames` (B, F, D)."""
        ref, values, reasons = self.reference, self.values, self.reasons
        flat = frames.reshape(-1, frames.shape[-1]).double()
        real = (ref.frame_mean, ref.frame_cov)
        if len(flat) < 2 or ref.num_clips * ref.frames_per_clip < 2:
            reasons[FD] = "needs ≥ 2 generated and real frames"
        else:
            values[FD] = frechet_distance(*real, *gaussian(flat), ref.frame_cov_sqrt)
        needed = 2 * (flat.shape[1] + 1)
        if len(frames) < 2 or len(flat) < needed or FD in reasons:
            reasons[FAD_INF] = reasons[FAD_INF_R2] = (
                f"needs ≥ 2 generated clips and ≥ {needed} frames, got {len(frames)} and "
                f"{len(flat)}"
            )
        else:
            values[FAD_INF], values[FAD_INF_R2] = fad_inf(flat, *real, ref.frame_cov_sqrt)

    def clip_set(self, frames: torch.Tensor, clip_emb: torch.Tensor) -> None:
        """KID, diversity and NDB/k of the generated clips' embeddings (B, E) and frames."""
        ref, values, reasons = self.reference, self.values, self.reasons
        clip_std = (clip_emb.double() - ref.clip_mean) / ref.clip_scale
        if min(len(self.gen), ref.num_clips) < KID_MIN_CLIPS:
            reasons[KID] = f"needs ≥ {KID_MIN_CLIPS} generated and real clips"
        else:
            values[KID] = kid(clip_std, ref.clip_embeddings)
        if len(self.gen) < 2 or ref.pairwise_distance is None:
            reasons[DIVERSITY] = reasons[NDB_K] = "needs ≥ 2 generated and real clips"
        elif ref.pairwise_distance < 1e-12:
            reasons[DIVERSITY] = "the real clips are all identical"
        else:
            values[DIVERSITY] = mean_pairwise_distance(clip_std) / ref.pairwise_distance
        if len(ref.centroids) < 2:
            real_frames = ref.num_clips * ref.frames_per_clip
            reasons[NDB_K] = f"needs ≥ 40 real frames (20 a bin), got {real_frames}"
        elif NDB_K not in reasons:  # 2 clips a side, for a variance of the bin shares
            shares = bin_shares((frames.double() - ref.frame_mean) / ref.frame_scale, ref.centroids)
            per_clip = min(frames.shape[1], ref.frames_per_clip)
            values[NDB_K] = ndb_k(shares, ref.bin_shares, per_clip)

    def level(self) -> None:
        """Flatness, loudness and its gap, crest factor, noise floor and STFT distance."""
        gen, ref, values = self.gen, self.reference, self.values
        values[FLATNESS] = median_flatness(gen, ref.sample_rate)
        values[LOUDNESS] = float(rms_dbfs(gen).mean())
        values[LOUDNESS_GAP] = abs(values[LOUDNESS] - ref.loudness_dbfs)
        values[CREST] = float(crest_factor(gen).median()) / max(ref.crest, 1e-12)
        values[FLOOR] = float(level_floor(gen, ref.sample_rate).median()) - ref.floor_db
        values[STFT_DISTANCE] = stft_distance(mean_log_spectra(gen), ref.spectra)

    def time(self, reseeded: torch.Tensor | None) -> None:
        """Repetition, spectral change and (with `reseeded`) noise spread."""
        gen, ref, values, reasons = self.gen, self.reference, self.values, self.reasons
        frames = time_frames(gen, ref.sample_rate)  # (B, F, 64)
        measured = {
            REPETITION: (repetition(frames, ref.sample_rate), ref.repetition),
            CHANGE: (spectral_change(frames), ref.change),
        }
        for name, (ours, real) in measured.items():
            if float(real.mean()) < 1e-6:
                reasons[name] = "the real clips do not change at all"
            else:
                values[name] = float(ours.mean() / real.mean())
        if reseeded is None:
            reasons[NOISE_SPREAD] = "needs rollouts of the same primers with other noise seeds"
            return
        others = checked_clips(
            reseeded.reshape(-1, reseeded.shape[-1]), ref.sample_rate, "reseeded clips"
        ).reshape(-1, *reseeded.shape[-2:])
        if len(others[0]) > len(gen):
            raise ValueError(f"reseeded: {len(others[0])} primers, but only {len(gen)} generated")
        groups = torch.cat([gen[None, : others.shape[1]], others])  # (K, B', T)
        spread = noise_spread(groups, ref)
        if spread is None:
            reasons[NOISE_SPREAD] = "needs ≥ 2 real clips that differ"
        values[NOISE_SPREAD] = spread

    def music(self) -> None:
        """`musicmetrics.music_metrics`: music_fd and tag_kl."""
        ref = self.reference
        if ref.music is None:
            self.reasons[MUSIC_FD] = self.reasons[TAG_KL] = (
                "the real clips are shorter than a 3-s patch"
            )
            return
        found, why = music_metrics(shared_embedding(), self.gen, ref.music, ref.sample_rate)
        self.values.update(found)
        self.reasons.update(why)

    def drift(self, primers: torch.Tensor | None) -> None:
        """The drift metrics (module docstring) from the `primers` (B, P)."""
        ref = self.reference
        if primers is None or ref.drift is None:
            why = (
                "needs the primers"
                if primers is None
                else "the reference has no true continuations"
            )
            self.reasons.update(dict.fromkeys(DRIFTS.values(), why))
            return
        if not _drift_ready(primers, self.gen, ref.sample_rate):
            why = f"primers and clips must be ≥ {DRIFT_MIN_SECONDS:g} s"
            self.reasons.update(dict.fromkeys(DRIFTS.values(), why))
            return
        distances = continuity(primers, self.gen, ref.sample_rate)
        for name, metric in DRIFTS.items():
            true_drift = max(ref.drift[name], DRIFT_FLOORS[name])
            self.values[metric] = float(distances[name].mean()) / true_drift


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
