"""Building blocks of the quality metrics: audio embeddings (`LogMelEmbedding`,
`TorchScriptEmbedding`), Gaussian/Fréchet, KID and k-means/NDB statistics, and spectral
statistics of (B, T) clips (flatness, mean log spectra, tail behaviour). `metrics` combines
them into named metrics and the score.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import warnings
from pathlib import Path
from typing import Protocol

import torch
import torchaudio

from samplegan_tune.audio.sound import mel_power, rms_dbfs
from samplegan_tune.core.errors import UserInputError

STFT_SIZES = (256, 512, 1024)
LOG_FLOOR = 1e-10  # power floor before a log: digital silence is −100 dB, not −inf
SILENT_FRAME_POWER = 1e-9  # frames below −90 dBFS have no meaningful flatness
_MAX_ABS = 100.0  # clamp before squaring: a diverged model's 1e30 must not overflow to inf
LOAD_ERRORS = (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.PickleError)
"""What loading a model or reference file may raise when the file is bad."""


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
        self.sample_rate, self.n_fft, self.n_mels = sample_rate, analysis_fft(sample_rate), n_mels
        self.id = f"logmel-{sample_rate}-{self.n_fft}-{n_mels}"

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) audio -> log-mel frames (B, F, n_mels) and clip embeddings (B, 2 · n_mels): the
        frames' mean and std."""
        power = mel_power(clips.float(), self.sample_rate, self.n_fft, self.n_fft // 4, self.n_mels)
        frames = torch.log(power + LOG_FLOOR)  # (B, F, D)
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
        except LOAD_ERRORS as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserInputError(f"{self.path}: not a TorchScript model file ({detail})") from exc
        self.id = "torchscript-" + hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def embed(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) audio -> frames (B, F, D) and clip embeddings (B, E) by the user's model;
        UserInputError when it fails or returns the wrong shape or NaN/inf."""
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
        _mmd2(
            x[torch.randperm(len(x), generator=rng)[:size]],
            y[torch.randperm(len(y), generator=rng)[:size]],
        )
        for _ in range(subsets)
    ]
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
    spec = torch.stft(
        clips.float(), n_fft, n_fft // 4, window=window, center=False, return_complex=True
    )
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
    fbank = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, 64, sample_rate
    )
    mel = torch.log(power_frames(tail, n_fft) @ fbank + LOG_FLOOR)  # (B, F, 64)
    return {
        "level_db": rms_dbfs(tail),
        "activity_db": rms_dbfs(tail.diff(dim=1)),
        "flux": mel.diff(dim=1).abs().mean((1, 2)),
    }


def crest_factor(clips: torch.Tensor) -> torch.Tensor:
    """Each clip's peak-to-RMS ratio (B,), the peak its 99.9th percentile of |x| (one stray
    sample does not move it): ≈ 3.3 for white noise, 1.4 for a sine, 5–20 for mastered music;
    clipping or heavy compression lowers it."""
    x = clips.float()
    peak = torch.quantile(x.abs(), 0.999, dim=1)
    return peak / x.pow(2).mean(1).sqrt().clamp_min(1e-12)


def level_floor(clips: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Each clip's quiet moments against its typical level (B,), in dB (≤ 0): the 10th
    percentile of its 32-ms frames' RMS level minus their median. Music with rests or decays
    sits at −10 to −30 dB; hiss or a noise floor filling the rests raises it towards 0."""
    frame = max(1, round(0.032 * sample_rate))
    x = clips.float()[:, : clips.shape[1] // frame * frame].reshape(len(clips), -1, frame)
    level = 10 * torch.log10(x.pow(2).mean(2).clamp_min(1e-12))  # (B, F)
    return torch.quantile(level, 0.1, dim=1) - level.median(1).values


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


def stft_distance(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]) -> float:
    """Mean over FFT sizes of the mean |a − b| of two `mean_log_spectra` results (nats)."""
    return sum(float((a[n] - b[n]).abs().mean()) for n in STFT_SIZES) / len(STFT_SIZES)
