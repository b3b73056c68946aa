"""Reading, resampling, mixing down, measuring and writing audio; nothing about models.

All decoding goes through soundfile (libsndfile), because torchaudio 2.11 has no working
audio I/O; torchaudio is used only for its resampler.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf
import torch
import torchaudio
import torchaudio.functional as AF

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import atomic_path

AUDIO_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"})
"""Suffixes (lower case) picked up when a folder is searched; compared case-insensitively."""

SILENCE_FLOOR_DBFS = -120.0
"""The level reported for digital silence, so that log(0) never reaches callers."""

PEAK_LIMIT = 0.999
"""Largest absolute sample value `normalise_loudness` leaves, just inside 16-bit full scale."""

logger = logging.getLogger("samplegan_tune")

# soundfile raises its own hierarchy for libsndfile failures, but malformed headers can also
# surface as ValueError/EOFError from its Python-side parsing.
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, EOFError, OSError)


class AudioDecodeError(UserInputError):
    """A file exists but cannot be decoded as audio; the message names the file."""


def find_audio_files(paths: Sequence[str | Path] | str | Path) -> list[Path]:
    """Expand files and folders into a deterministic list of audio files.

    A folder is searched recursively; only files with an `AUDIO_EXTENSIONS` suffix are kept and
    hidden files (a leading ".", e.g. macOS "._song.wav" resource forks) are skipped. A file
    named explicitly is kept whatever its suffix: decoding decides whether it is audio.

    Args:
        paths: Files and/or folders, in the order wanted. A single path is accepted too.

    Returns:
        The files, folder contents sorted by relative path, duplicates removed (first wins).

    Raises:
        UserInputError: No paths; an empty path; a path that does not exist; a folder with no
            files; a folder with files but none with an audio suffix.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise UserInputError("no audio paths given")
    found: list[Path] = []
    for raw in paths:
        if not str(raw).strip():  # Path("") means ".", which would silently scan the cwd
            raise UserInputError("an empty string was given as an audio path")
        path = Path(raw).expanduser()
        if not path.exists():
            raise UserInputError(f"{path}: no such file or folder")
        found.extend(_audio_in_folder(path) if path.is_dir() else [path])
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _audio_in_folder(folder: Path) -> list[Path]:
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and not _is_hidden(p.relative_to(folder))),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise UserInputError(f"{folder}: folder is empty (no files found, searched recursively)")
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    if not audio:
        allowed = " ".join(sorted(AUDIO_EXTENSIONS))
        raise UserInputError(
            f"{folder}: no audio files in {len(files)} file(s) found (looked for {allowed})"
        )
    return audio


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode one file to mono float32 at `sample_rate`.

    Channels (any number) are averaged; the result is resampled with torchaudio's windowed-sinc
    resampler when the file's rate differs. NaN/inf samples (possible in float WAVs) become 0
    so that one bad sample cannot poison a whole corpus.

    Args:
        path: The file.
        sample_rate: Target rate in Hz.

    Returns:
        Tensor (T,) float32, T = ceil(frames * sample_rate / file_rate).

    Raises:
        AudioDecodeError: soundfile cannot decode the file, or it holds no samples.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except _DECODE_ERRORS as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioDecodeError(f"{path}: cannot decode audio ({detail})") from exc
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioDecodeError(f"{path}: cannot decode audio (the file holds no samples)")
    mono = torch.from_numpy(data).mean(dim=1)  # (T,)
    mono = torch.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    if file_rate != sample_rate:
        mono = AF.resample(mono, orig_freq=int(file_rate), new_freq=int(sample_rate))
    return mono.contiguous()


def load_many(paths: Sequence[str | Path], sample_rate: int) -> list[tuple[str, torch.Tensor]]:
    """Decode several files, skipping (with a logged warning) those that cannot be decoded.

    Args:
        paths: Files to decode, e.g. from `find_audio_files`.
        sample_rate: Target rate in Hz.

    Returns:
        `(name, audio)` pairs in input order; name is the path as given, audio (T,) float32.

    Raises:
        UserInputError: None of the files could be decoded.
    """
    loaded: list[tuple[str, torch.Tensor]] = []
    for path in paths:
        try:
            loaded.append((str(path), load_audio(path, sample_rate)))
        except AudioDecodeError as exc:
            logger.warning("skipping undecodable file: %s", exc)
    if not loaded:
        shown = ", ".join(str(p) for p in list(paths)[:5]) + (" ..." if len(paths) > 5 else "")
        raise UserInputError(f"no decodable audio in {len(paths)} file(s): {shown}")
    return loaded


def rms_dbfs(x: torch.Tensor) -> torch.Tensor:
    """RMS level in dB relative to full scale (a full-scale square wave is 0 dBFS).

    Args:
        x: Tensor (..., T).

    Returns:
        Tensor (...), floored at `SILENCE_FLOOR_DBFS` (-120).
    """
    power = x.float().pow(2).mean(dim=-1)
    floor = 10.0 ** (SILENCE_FLOOR_DBFS / 10.0)
    return 10.0 * torch.log10(power.clamp_min(floor))


def normalise_loudness(x: torch.Tensor, target_dbfs: float) -> torch.Tensor:
    """Scale to an RMS of `target_dbfs`, then scale down further if a peak would exceed 0.999.

    A pure gain is used (no limiter), so a very peaky signal ends up quieter than the target
    rather than distorted. Digital silence (at the -120 dBFS floor) is returned unchanged
    instead of being amplified by 10^5.

    Args:
        x: Tensor (..., T); each row along the last dim is normalised on its own.
        target_dbfs: Wanted RMS level, e.g. -20.0.

    Returns:
        Tensor (..., T), same dtype as `x`.
    """
    level = rms_dbfs(x)  # (...)
    gain = torch.where(
        level > SILENCE_FLOOR_DBFS,
        10.0 ** ((target_dbfs - level) / 20.0),
        torch.ones_like(level),
    )
    y = x * gain.unsqueeze(-1).to(x.dtype)
    if y.shape[-1] == 0:
        return y
    peak = y.abs().amax(dim=-1, keepdim=True)
    return y * (PEAK_LIMIT / peak.clamp_min(PEAK_LIMIT)).to(x.dtype)


def write_wav(path: str | Path, audio: torch.Tensor, sample_rate: int) -> None:
    """Write mono 16-bit PCM WAV, atomically (a failure leaves no partial file).

    Samples are clamped to [-1, 1] first: libsndfile would otherwise wrap out-of-range floats
    around when converting to integers, turning a small overshoot into a loud click.

    Args:
        path: Destination; its parent folder is created if missing.
        audio: Tensor (T,), any float dtype and device.
        sample_rate: Rate in Hz.
    """
    if audio.dim() != 1:
        raise ValueError(f"write_wav expects a 1-D (T,) tensor, got shape {tuple(audio.shape)}")
    data = torch.nan_to_num(audio.detach().to("cpu", torch.float32), nan=0.0).clamp(-1.0, 1.0)
    with atomic_path(path) as tmp:
        # The temporary file keeps the destination's suffix, which may not be ".wav".
        sf.write(str(tmp), data.numpy(), int(sample_rate), subtype="PCM_16", format="WAV")


# Every picture of sound a user sees (TensorBoard, the listening page) uses these settings.
N_FFT, HOP, N_MELS = 1024, 256, 80


def mel_db(audio: torch.Tensor, rate: int) -> torch.Tensor:
    """(T,) audio -> (N_MELS, frames) log-mel power in dB, low frequencies first."""
    power = mel_power(audio.detach().float().cpu(), rate, N_FFT, HOP, N_MELS, picture=True)
    return 10 * torch.log10(power.T + 1e-10)


def mel_power(
    clips: torch.Tensor, rate: int, n_fft: int, hop: int, n_mels: int, picture: bool = False
) -> torch.Tensor:
    """The one mel front end: (..., T) audio -> (..., frames, n_mels) mel power.

    Hann windows of `n_fft` every `hop` samples, `n_mels` HTK mel bands from 0 Hz to Nyquist
    (torchaudio's). Power is over the window's energy, so that white noise of variance s²
    gives s² per bin whatever `n_fft`; frames cover the clip only (no padding). `picture`:
    the spectrograms a user sees instead — frames centred on reflect-padded audio and power
    not divided by the window's energy (torchaudio's `MelSpectrogram` defaults).
    """
    window = torch.hann_window(n_fft, device=clips.device)
    flat = clips.reshape(-1, clips.shape[-1])
    spec = torch.stft(flat, n_fft, hop, window=window, center=picture, return_complex=True)
    power = spec.abs().pow(2).transpose(1, 2)  # (B, frames, n_fft / 2 + 1)
    if not picture:
        power = power / window.pow(2).sum()
    fbank = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, rate / 2, n_mels, rate)
    mel = power @ fbank.to(clips.device)
    return mel.reshape(*clips.shape[:-1], *mel.shape[1:])
