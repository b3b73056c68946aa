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
KID, NDB and diversity see features centred on the real mean and divided by the real RMS
spread, so the kernel and the bins work at unit scale whatever the embedding.

quality/score, LOWER = BETTER (0: indistinguishable from the real set):
    score = log1p(10 · max(FAD∞, 0) / tr Σ_real) + log1p(max(KID, 0)) + NDB/K
            + 10 · max(0, flatness − flatness_real) + loudness_gap_db / 10
            + stft_distance + 5 · max(0, 1 − diversity_ratio)²
Σ_real is the real frames' covariance, so the first term does not depend on the features'
units; the squared diversity shortfall shrugs off the spread between real sets (ratios of
0.5–1.3) but charges a repeated clip in full. FD stands in for FAD∞ when FAD∞ is
unavailable; other unavailable terms count 0 (named in the reasons). Calibration on known
failures: docs/metrics_calibration.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import torch
import torchaudio

from samplegan_tune.audio import rms_dbfs
from samplegan_tune.errors import UserInputError
from samplegan_tune.fileio import atomic_path

FD, FAD_INF, FAD_INF_R2 = "quality/fd", "quality/fad_inf", "quality/fad_inf_r2"
KID, NDB_K, FLATNESS = "quality/kid", "quality/ndb_k", "quality/flatness"
LOUDNESS, LOUDNESS_GAP = "quality/loudness_dbfs", "quality/loudness_gap_db"
STFT_DISTANCE, DIVERSITY = "quality/stft_distance", "quality/diversity_ratio"
SCORE = "quality/score"
METRICS = (FAD_INF, FAD_INF_R2, FD, KID, NDB_K, FLATNESS, LOUDNESS, LOUDNESS_GAP, STFT_DISTANCE,
           DIVERSITY, SCORE)  # fmt: skip
"""Every metric `evaluate_clips` reports, in display order."""

STFT_SIZES = (256, 512, 1024)
KID_MIN_CLIPS = 4
LOG_FLOOR = 1e-10  # power floor before a log: digital silence is −100 dB, not −inf
SILENT_FRAME_POWER = 1e-9  # frames below −90 dBFS have no meaningful flatness
_MAX_ABS = 100.0  # clamp before squaring: a diverged model's 1e30 must not overflow to inf
_REFERENCE_VERSION = 1
_LOAD_ERRORS = (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError,
                pickle.PickleError)  # fmt: skip


class Embedding(Protocol):
    """Audio -> features; `id` names them (a cached reference needs the same id)."""

    id: str

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) audio -> frames (B, F, D) and per-clip embeddings (B, E)."""
        ...


def analysis_fft(sample_rate: int) -> int:
    """FFT size of ~64 ms (1024 at 16 kHz) for log-mel frames, flatness and tail spectra."""
    return 2 ** round(math.log2(0.064 * sample_rate))


class LogMelEmbedding:
    """Log-mel power frames (natural log, 64 bands, ~64 ms windows, 75 % overlap); the clip
    embedding is the frames' mean and std, (2 · 64,)."""

    def __init__(self, sample_rate: int, n_mels: int = 64) -> None:
        n_fft = analysis_fft(sample_rate)
        self.id = f"logmel-{sample_rate}-{n_fft}-{n_mels}"
        # normalized=True: white noise of variance s² gives s² per bin, whatever n_fft.
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft, hop_length=n_fft // 4, n_mels=n_mels, center=False, normalized=True
        )

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = torch.log(self._mel(clips.float()) + LOG_FLOOR).transpose(1, 2)  # (B, F, D)
        return frames, torch.cat([frames.mean(1), frames.std(1, correction=0)], dim=1)


class TorchScriptEmbedding:
    """A user's `torch.jit` model file: (B, T) audio at the evaluation rate -> (B, E) clip
    embeddings (then each clip is one frame), or (B, F, D) frames (then the clip embedding is
    their mean and std). A missing or unusable file raises UserInputError naming it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(f"{self.path}: embedding model file not found")
        try:
            with warnings.catch_warnings():  # torch 2.14 deprecates jit: not the user's concern
                warnings.simplefilter("ignore", FutureWarning)
                self._model = torch.jit.load(str(self.path), map_location="cpu").eval()
        except _LOAD_ERRORS as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserInputError(f"{self.path}: not a TorchScript model file ({detail})") from exc
        self.id = "torchscript-" + hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            with torch.no_grad():
                out = self._model(clips.float())
        except Exception as exc:  # whatever fails inside the user's model is their input's fault
            raise UserInputError(f"{self.path}: the embedding model failed: {exc}") from exc
        if not isinstance(out, torch.Tensor) or out.dim() not in (2, 3) or len(out) != len(clips):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserInputError(
                f"{self.path}: the embedding model must map (B, T) audio to (B, E) or (B, F, D); "
                f"for B = {len(clips)} it returned {got}"
            )
        out = out.detach().float()
        if not torch.isfinite(out).all():
            raise UserInputError(f"{self.path}: the embedding model returned NaN or inf")
        if out.dim() == 2:
            return out[:, None, :], out
        return out, torch.cat([out.mean(1), out.std(1, correction=0)], dim=1)


def embed_clips(
    embedding: Embedding, clips: torch.Tensor, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """`embedding.embed` in chunks of `chunk` clips: frames (B, F, D), clip embeddings (B, E)."""
    parts = [embedding.embed(piece) for piece in clips.split(chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# --------------------------------------------------------------------------- distances


def gaussian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) samples, N ≥ 2 -> mean (D,) and covariance (D, D), float64."""
    x = x.double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def psd_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """Square root (D, D) of a symmetric positive semi-definite (D, D) matrix."""
    vals, vecs = torch.linalg.eigh(cov.double())
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(
    mu1: torch.Tensor,
    cov1: torch.Tensor,
    mu2: torch.Tensor,
    cov2: torch.Tensor,
    cov1_sqrt: torch.Tensor | None = None,
) -> float:
    """|mu1 − mu2|² + tr(S1 + S2 − 2 (S1 S2)^½) for means (D,) and covariances (D, D).

    tr((S1 S2)^½) is the sum of the square roots of the eigenvalues of S1^½ S2 S1^½, which is
    symmetric PSD, so no general matrix square root (scipy's sqrtm) is needed.
    """
    root = psd_sqrt(cov1) if cov1_sqrt is None else cov1_sqrt.double()
    middle = root @ cov2.double() @ root
    root_trace = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    means = (mu1.double() - mu2.double()).pow(2).sum()
    return float(means + cov1.double().trace() + cov2.double().trace() - 2 * root_trace)


def fad_inf(
    frames: torch.Tensor,
    ref_mean: torch.Tensor,
    ref_cov: torch.Tensor,
    ref_cov_sqrt: torch.Tensor,
    steps: int = 10,
    seed: int = 0,
) -> tuple[float, float]:
    """FAD∞ and the fit's R²: FD of random subsets (N from max(D + 1, M / 4) to M) of
    `frames` (M, D) against the reference Gaussian, extrapolated to 1 / N = 0."""
    total, dim = frames.shape
    sizes = torch.linspace(max(dim + 1, total // 4), total, steps).round().long().unique()
    rng = torch.Generator().manual_seed(seed)
    fds = []
    for n in sizes.tolist():
        mean, cov = gaussian(frames[torch.randperm(total, generator=rng)[:n]])
        fds.append(frechet_distance(ref_mean, ref_cov, mean, cov, ref_cov_sqrt))
    y = torch.tensor(fds, dtype=torch.float64)
    design = torch.stack([torch.ones_like(y), 1.0 / sizes.double()], dim=1)  # (S, 2)
    coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    ss_res, ss_tot = float((y - design @ coef).pow(2).sum()), float((y - y.mean()).pow(2).sum())
    return float(coef[0]), 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def kid(
    x: torch.Tensor, y: torch.Tensor, subset: int = 100, subsets: int = 50, seed: int = 0
) -> float:
    """Unbiased MMD² between embeddings x (m, E) and y (n, E), m, n ≥ 2; polynomial kernel,
    degree 3, gamma 1 / E, coef 1; the mean over random subsets when a side exceeds `subset`."""
    x, y = x.double(), y.double()
    if len(x) <= subset and len(y) <= subset:
        return _mmd2(x, y)
    size, rng = min(len(x), len(y), subset), torch.Generator().manual_seed(seed)
    draws = [
        _mmd2(x[torch.randperm(len(x), generator=rng)[:size]],
              y[torch.randperm(len(y), generator=rng)[:size]])
        for _ in range(subsets)
    ]  # fmt: skip
    return sum(draws) / len(draws)


def _mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / a.shape[1] + 1.0) ** 3

    kxx, kyy, m, n = kernel(x, x), kernel(y, y), len(x), len(y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * kernel(x, y).mean())


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iterations: int = 50) -> torch.Tensor:
    """Centroids (k, D) of `x` (N, D): k-means++ seeding, then Lloyd iterations; the same for a
    seed. An emptied cluster keeps its previous centroid."""
    x, rng = x.float(), torch.Generator().manual_seed(seed)
    centroids = x[torch.randint(len(x), (1,), generator=rng)]
    while len(centroids) < k:
        d2 = torch.cdist(x, centroids).amin(1).pow(2)
        pick = torch.multinomial(d2 + 1e-12, 1, generator=rng)  # + eps: all-equal data too
        centroids = torch.cat([centroids, x[pick]])
    previous = None
    for _ in range(iterations):
        assign = torch.cdist(x, centroids).argmin(1)
        if previous is not None and torch.equal(assign, previous):
            break  # converged: the same bins give the same centroids
        counts = torch.bincount(assign, minlength=k).float()[:, None]
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        centroids, previous = torch.where(counts > 0, sums / counts.clamp_min(1), centroids), assign
    return centroids


def bin_shares(frames: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Each clip's share of frames in each k-means bin: frames (B, F, D) -> (B, k)."""
    assign = torch.cdist(frames.float(), centroids[None].expand(len(frames), -1, -1)).argmin(2)
    return torch.nn.functional.one_hot(assign, len(centroids)).double().mean(1)


def ndb_k(gen_shares: torch.Tensor, real_shares: torch.Tensor, frames_per_clip: int) -> float:
    """Share of bins whose proportion of generated frames differs from the real one.

    A two-proportion z-test per bin (two-sided, α = 0.05) with clips as the sampling unit: a
    side's variance is that of its clips' shares, floored at the binomial p (1 − p) / frames
    of the pooled proportion p. (Frames of one clip are far from independent: a frame-level
    test calls two random halves of one corpus different in over half the bins.)

    Args:
        gen_shares: (B, k) `bin_shares` of the generated clips, B ≥ 2.
        real_shares: (N, k) those of the real clips, N ≥ 2.
        frames_per_clip: frames behind each share (the shorter side's).
    """
    b, n = len(gen_shares), len(real_shares)
    p_gen, p_real = gen_shares.mean(0), real_shares.mean(0)  # (k,)
    pooled = (p_gen * b + p_real * n) / (b + n)
    floor = pooled * (1 - pooled) / frames_per_clip
    se = (gen_shares.var(0).maximum(floor) / b + real_shares.var(0).maximum(floor) / n).sqrt()
    z = (p_gen - p_real).abs() / se.clamp_min(1e-12)
    return float(((z > 1.959964) & (se > 0)).double().mean())


# --------------------------------------------------------------------------- signal statistics


def power_frames(clips: torch.Tensor, n_fft: int) -> torch.Tensor:
    """(B, T) -> power spectra (B, F, n_fft / 2 + 1), Hann window, hop n_fft / 4, scaled so
    that white noise of variance s² has s² per bin."""
    window = torch.hann_window(n_fft)
    spec = torch.stft(clips.float(), n_fft, n_fft // 4, window=window, center=False,
                      return_complex=True)  # fmt: skip
    return spec.abs().pow(2).transpose(1, 2) / window.pow(2).sum()


def median_flatness(clips: torch.Tensor, sample_rate: int) -> float:
    """Median over frames louder than −90 dBFS of the spectral flatness (geometric ÷ arithmetic
    mean power) of (B, T); 0.0 when no frame is that loud."""
    n_fft = analysis_fft(sample_rate)
    power = power_frames(clips, n_fft).reshape(-1, n_fft // 2 + 1)
    power = power[power.mean(1) > SILENT_FRAME_POWER]
    flat = torch.exp(torch.log(power + 1e-20).mean(1)) / power.mean(1)
    return float(flat.median()) if len(flat) else 0.0


def mean_log_spectra(clips: torch.Tensor) -> dict[int, torch.Tensor]:
    """FFT size in `STFT_SIZES` -> mean log-magnitude (n_fft / 2 + 1,) over all frames of (B, T)."""
    return {n: 0.5 * torch.log(power_frames(clips, n) + LOG_FLOOR).mean((0, 1)) for n in STFT_SIZES}


def tail_statistics(clips: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
    """What the second half of each clip of (B, T) does, each (B,): "level_db" its RMS dBFS;
    "activity_db" the RMS dBFS of its sample-to-sample differences (−120 for a constant, DC or
    stuck waveform); "flux" the mean |frame-to-frame change| of its 64-band log-mel spectrum
    (≈ 0 for a static spectrum such as a steady tone)."""
    tail, n_fft = clips[:, clips.shape[1] // 2 :].float(), analysis_fft(sample_rate)
    fbank = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, 64,
                                                  sample_rate)  # fmt: skip
    mel = torch.log(power_frames(tail, n_fft) @ fbank + LOG_FLOOR)  # (B, F, 64)
    return {
        "level_db": rms_dbfs(tail),
        "activity_db": rms_dbfs(tail.diff(dim=1)),
        "flux": mel.diff(dim=1).abs().mean((1, 2)),
    }


def mean_pairwise_distance(embeddings: torch.Tensor) -> float:
    """Mean Euclidean distance over all pairs of rows of (B, E), B ≥ 2."""
    return float(torch.pdist(embeddings.double()).mean())


def checked_clips(clips: torch.Tensor, sample_rate: int, what: str) -> torch.Tensor:
    """(B, T) as float32 on CPU, NaN/inf set to 0 and magnitudes clamped to 100 (far above full
    scale) so nothing overflows. Raises ValueError for other shapes or T below ~0.5 s."""
    shortest = max(sample_rate // 2, 4 * analysis_fft(sample_rate))
    if clips.dim() != 2 or len(clips) < 1 or clips.shape[1] < shortest:
        raise ValueError(f"{what}: need (B ≥ 1, T ≥ {shortest}) audio, got {tuple(clips.shape)}")
    clips = torch.nan_to_num(clips.detach().to("cpu", torch.float32), nan=0.0)
    return clips.clamp(-_MAX_ABS, _MAX_ABS)


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
            tail=tail_statistics(clips, sample_rate), embedding=embedding,
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
        except _LOAD_ERRORS:
            pass  # rebuilt below
    reference = RealReference.from_clips(clips, sample_rate, embedding)
    reference.save(path)
    return reference


# --------------------------------------------------------------------------- evaluation


def evaluate_clips(
    generated: torch.Tensor, reference: RealReference
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Every metric of `generated` (B, T) against `reference`, at the reference's rate.

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
    values[SCORE] = quality_score(values, reference, reasons)
    return values, reasons


def stft_distance(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]) -> float:
    """Mean over FFT sizes of the mean |a − b| of two `mean_log_spectra` results (nats)."""
    return sum(float((a[n] - b[n]).abs().mean()) for n in STFT_SIZES) / len(STFT_SIZES)


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
    kid_value, diversity = values[KID], values[DIVERSITY]
    terms = {
        FAD_INF: math.log1p(10 * max(frechet, 0.0) / total_variance),
        KID: None if kid_value is None else math.log1p(max(kid_value, 0.0)),
        NDB_K: values[NDB_K],
        FLATNESS: 10 * max(0.0, values[FLATNESS] - reference.flatness),
        LOUDNESS_GAP: values[LOUDNESS_GAP] / 10,
        STFT_DISTANCE: values[STFT_DISTANCE],
        DIVERSITY: None if diversity is None else 5 * max(0.0, 1 - diversity) ** 2,
    }
    missing = [name for name, term in terms.items() if term is None]
    if missing:
        reasons[SCORE] = "partial: left out " + ", ".join(missing)
    return sum(term for term in terms.values() if term is not None)
