"""The corpus (one float tensor + file boundaries), its cache, splits, and window batches."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from samplegan_tune.audio.sound import find_audio_files, load_many, normalise_loudness, rms_dbfs
from samplegan_tune.audio.synthetic import synthetic_songs
from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import atomic_path

SYNTHETIC = "synthetic"
"""The `data` value that selects the built-in procedural corpus."""

CACHE_FORMAT_VERSION = 1  # bump when the cached content or the synthesis changes
SILENCE_DBFS = -90.0  # below this a file is treated as silent (dither and hiss sit above)
logger = logging.getLogger("samplegan_tune")


@dataclass(frozen=True, eq=False)  # eq=False: tensor fields make == ambiguous
class Corpus:
    """All audio of a corpus in one contiguous tensor, with the boundaries of each file.

    Attributes:
        audio: (N,) float32 mono samples of every file, back to back.
        starts: (F,) int64 offset of each file in `audio`.
        lengths: (F,) int64 number of samples of each file.
        names: F file names (paths, or synthetic song names).
        sample_rate: Hz.
    """

    audio: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    names: tuple[str, ...]
    sample_rate: int

    def __post_init__(self) -> None:
        if not (self.starts.shape == self.lengths.shape == (len(self.names),)):
            raise ValueError("Corpus: starts, lengths and names must all have one entry per file")

    @classmethod
    def from_items(cls, items: Sequence[tuple[str, torch.Tensor]], sample_rate: int) -> Corpus:
        """Concatenate `(name, audio (T,))` pairs into a corpus (copies the audio)."""
        lengths = torch.tensor([int(a.numel()) for _, a in items], dtype=torch.int64)
        audio = [a.detach().reshape(-1).to("cpu", torch.float32) for _, a in items]
        return cls(
            audio=torch.cat(audio) if audio else torch.zeros(0),
            starts=torch.cumsum(lengths, 0) - lengths,
            lengths=lengths,
            names=tuple(name for name, _ in items),
            sample_rate=int(sample_rate),
        )

    def to(self, device: torch.device | str) -> Corpus:
        """The same corpus with all tensors on `device`."""
        return replace(
            self,
            audio=self.audio.to(device),
            starts=self.starts.to(device),
            lengths=self.lengths.to(device),
        )

    @property
    def num_files(self) -> int:
        """Number of files in the corpus."""
        return len(self.names)

    @property
    def seconds(self) -> float:
        """Total duration of all files."""
        return int(self.lengths.sum()) / self.sample_rate

    def file(self, i: int) -> torch.Tensor:
        """The samples (T_i,) of file `i` (a view into `audio`)."""
        start = int(self.starts[i])
        return self.audio[start : start + int(self.lengths[i])]

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """`(name, audio (T_i,))` for every file, as views."""
        return [(name, self.file(i)) for i, name in enumerate(self.names)]


# --------------------------------------------------------------------------- preparation


def default_cache_dir() -> Path:
    """$SAMPLEGAN_CACHE if set, else ~/.cache/samplegan-tune (read at call time, not import)."""
    env = os.environ.get("SAMPLEGAN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "samplegan-tune"


def prepare_corpus(
    data: str | Sequence[str],
    sample_rate: int = 16000,
    normalise_dbfs: float | None = -20.0,
    cache_dir: str | Path | None = None,
    min_samples: int = 0,
    *,
    synthetic_seconds: float = 180.0,
    synthetic_seed: int = 0,
) -> Corpus:
    """Decode (or synthesise), check, loudness-normalise and cache a corpus.

    The cache key covers every input file's absolute path, size and mtime, the rate and the
    loudness target (or the synthetic parameters), so an edited file is decoded again.
    `min_samples` is applied after the cache, so it does not split the cache.

    Args:
        data: "synthetic" (or ["synthetic"]) for the built-in corpus, or files/folders.
        sample_rate: Target rate in Hz.
        normalise_dbfs: RMS target per file, or None to keep levels as they are.
        cache_dir: Where to cache; default `default_cache_dir()`.
        min_samples: Files shorter than this are dropped with a warning.
        synthetic_seconds: Duration of the synthetic corpus.
        synthetic_seed: Seed of the synthetic corpus.

    Returns:
        The corpus, on CPU.

    Raises:
        UserInputError: Bad paths, no decodable audio, all files silent, or all too short.
    """
    if sample_rate <= 0:
        raise UserInputError(f"sample_rate: must be a positive number of Hz, got {sample_rate}")
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    build: Callable[[], list[tuple[str, torch.Tensor]]]
    if paths == [SYNTHETIC]:  # also as a one-item list, as argparse's nargs="+" gives it
        source: object = {"synthetic": [float(synthetic_seconds), int(synthetic_seed)]}
        where = f"synthetic corpus ({synthetic_seconds} s, seed {synthetic_seed})"

        def build() -> list[tuple[str, torch.Tensor]]:
            return synthetic_songs(synthetic_seconds, sample_rate, synthetic_seed)
    else:
        files = find_audio_files(paths)
        source = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        where = ", ".join(str(p) for p in paths)

        def build() -> list[tuple[str, torch.Tensor]]:
            return load_many(files, sample_rate)

    key_text = json.dumps(
        [CACHE_FORMAT_VERSION, source, int(sample_rate), normalise_dbfs], sort_keys=True
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
    cache_file = Path(cache_dir or default_cache_dir()).expanduser() / f"corpus-{key}.pt"
    corpus = _load_cache(cache_file)
    if corpus is None:
        corpus = _checked_corpus(build(), sample_rate, normalise_dbfs, where)
        _save_cache(cache_file, corpus)
    return _drop_short(corpus, min_samples, where)


def _checked_corpus(
    items: list[tuple[str, torch.Tensor]], sample_rate: int, dbfs: float | None, where: str
) -> Corpus:
    # Silence is judged before normalisation, which would otherwise amplify hiss into "music".
    loud = []
    for name, audio in items:
        if audio.numel() and float(rms_dbfs(audio)) >= SILENCE_DBFS:
            loud.append((name, audio))
        else:
            logger.warning("skipping silent file (RMS below %g dBFS): %s", SILENCE_DBFS, name)
    if not loud:
        raise UserInputError(f"{where}: all audio is silent (RMS below {SILENCE_DBFS:g} dBFS)")
    if dbfs is not None:
        loud = [(n, normalise_loudness(a, dbfs)) for n, a in loud]
    return Corpus.from_items(loud, sample_rate)


def _drop_short(corpus: Corpus, min_samples: int, where: str) -> Corpus:
    keep = [i for i in range(corpus.num_files) if int(corpus.lengths[i]) >= min_samples]
    if len(keep) == corpus.num_files:
        return corpus
    rate = corpus.sample_rate
    minimum = f"{min_samples} samples ({min_samples / rate:.3f} s at {rate} Hz)"
    if not keep:
        longest = int(corpus.lengths.max()) if corpus.num_files else 0
        raise UserInputError(
            f"{where}: every file is shorter than the minimum of {minimum}; "
            f"the longest has {longest} samples"
        )
    for i in sorted(set(range(corpus.num_files)) - set(keep)):
        length = int(corpus.lengths[i])
        logger.warning("skipping %s: %d samples, shorter than %s", corpus.names[i], length, minimum)
    return _subset(corpus, keep)


def _subset(corpus: Corpus, indices: Sequence[int]) -> Corpus:
    return Corpus.from_items(
        [(corpus.names[i], corpus.file(i)) for i in indices], corpus.sample_rate
    )


def _load_cache(path: Path) -> Corpus | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        if blob["version"] != CACHE_FORMAT_VERSION:
            return None
        if int(blob["lengths"].sum()) != blob["audio"].numel():
            raise ValueError("lengths do not add up to the audio")
        return Corpus(
            audio=blob["audio"],
            starts=torch.cumsum(blob["lengths"], 0) - blob["lengths"],
            lengths=blob["lengths"],
            names=tuple(blob["names"]),
            sample_rate=int(blob["sample_rate"]),
        )
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.PickleError):
        logger.warning("ignoring unreadable corpus cache %s; rebuilding it", path)
        return None


def _save_cache(path: Path, corpus: Corpus) -> None:
    blob = {
        "version": CACHE_FORMAT_VERSION,
        "audio": corpus.audio,
        "lengths": corpus.lengths,
        "names": list(corpus.names),
        "sample_rate": corpus.sample_rate,
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
    except OSError as exc:  # a read-only cache folder must not stop training
        logger.warning("could not write corpus cache %s: %s", path, exc)


# --------------------------------------------------------------------------- splits and batches


def split_corpus(
    corpus: Corpus, holdout_fraction: float = 0.1, min_samples: int = 0
) -> tuple[Corpus, Corpus]:
    """Split into (train, held-out): by file when there are ≥ 2 files, else by time.

    By file, the last k files are held out, 1 ≤ k ≤ F-1, with k chosen so their duration is
    closest to `holdout_fraction` of the total. By time, the last fraction of the single file
    is held out; if either part would be shorter than `min_samples`, the held-out part is made
    exactly `min_samples` long instead. Files shorter than `min_samples` are dropped first.

    Args:
        corpus: The corpus to split.
        holdout_fraction: Wanted share of the duration held out, in (0, 1).
        min_samples: Every file of both parts must have at least this many samples.

    Returns:
        (train, held_out) corpora, on CPU.

    Raises:
        UserInputError: The corpus is too short to give both parts `min_samples` samples.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise UserInputError(f"holdout_fraction: must be in (0, 1), got {holdout_fraction}")
    corpus = _drop_short(corpus.to("cpu"), min_samples, "corpus to split")
    lengths = corpus.lengths.tolist()
    if len(lengths) >= 2:
        target = holdout_fraction * sum(lengths)
        held = [sum(lengths[-k:]) for k in range(1, len(lengths))]
        k = 1 + min(range(len(held)), key=lambda i: abs(held[i] - target))
        n = len(lengths) - k
        return _subset(corpus, range(n)), _subset(corpus, range(n, len(lengths)))
    total, need = lengths[0], max(min_samples, 1)
    n_held = round(total * holdout_fraction)
    if n_held < need or total - n_held < need:
        n_held = need
    if total - n_held < need:
        rate = corpus.sample_rate
        raise UserInputError(
            f"{corpus.names[0]}: {total} samples is too short to hold out a part: train and "
            f"held-out parts need {need} samples ({need / rate:.3f} s at {rate} Hz) each"
        )
    name, audio = corpus.names[0], corpus.file(0)
    rate = corpus.sample_rate
    train = Corpus.from_items([(name, audio[: total - n_held])], rate)
    return train, Corpus.from_items([(name, audio[total - n_held :])], rate)


class WindowSampler:
    """Draws random windows lying wholly inside one file, gathered by index on the device.

    Every valid window start in the corpus is equally likely, so long files are drawn more
    often than short ones in proportion to their number of valid starts.
    """

    def __init__(self, corpus: Corpus, device: torch.device | str = "cpu") -> None:
        """Move the corpus to `device` once; batches are then gathered there."""
        self.device = torch.device(device)
        self.corpus = corpus.to(self.device)
        # window -> (exclusive cumulative valid starts (F,), inclusive (F,), total)
        self._counts: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}

    def _valid_starts(self, window: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if window not in self._counts:
            if window < 1:
                raise ValueError(f"window must be ≥ 1 sample, got {window}")
            counts = (self.corpus.lengths - window + 1).clamp_min(0)  # (F,)
            inclusive = torch.cumsum(counts, 0)
            total = int(inclusive[-1]) if counts.numel() else 0
            if total == 0:
                rate = self.corpus.sample_rate
                longest = int(self.corpus.lengths.max()) if counts.numel() else 0
                raise UserInputError(
                    f"window of {window} samples ({window / rate:.3f} s at {rate} Hz) is longer "
                    f"than every file of the corpus (longest: {longest} samples)"
                )
            self._counts[window] = (inclusive - counts, inclusive, total)
        return self._counts[window]

    def sample(self, batch_size: int, window: int, generator: torch.Generator) -> torch.Tensor:
        """Draw `batch_size` windows of `window` samples.

        Args:
            batch_size: B.
            window: Samples per window (e.g. context + segment).
            generator: Source of randomness, on CPU or on the sampler's device.

        Returns:
            Tensor (B, window) float32 on the sampler's device.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        exclusive, inclusive, total = self._valid_starts(window)
        flat = torch.randint(total, (batch_size,), generator=generator, device=generator.device)
        flat = flat.to(self.device)  # (B,) index among all valid starts of all files
        file = torch.searchsorted(inclusive, flat, right=True)  # (B,)
        start = self.corpus.starts[file] + (flat - exclusive[file])  # (B,)
        offsets = torch.arange(window, device=self.device)  # (window,)
        return self.corpus.audio[start[:, None] + offsets]

    def fixed_windows(self, count: int, window: int, seed: int) -> torch.Tensor:
        """A deterministic batch (count, window) for evaluation: the same for a given seed
        whatever the device, because the draw is made on CPU."""
        return self.sample(count, window, torch.Generator().manual_seed(seed))
