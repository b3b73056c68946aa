"""`samplegan-tune evaluate`: every quality metric of one set of audio against another.

Both sets are decoded (any format/rate the loader takes), mixed to mono at --sample-rate and
cut into clips of --clip-seconds; the real set becomes a `RealReference`, and the generated
set is scored against it. Levels are kept as they are: loudness is one of the metrics.

With --primers (one file per --generated file, matched in sorted order), each generated file
is taken as the continuation of its primer: its first clip is judged against the primer's last
`PRIMER_SECONDS` for key, tempo, timbre and level (the drift metrics), and the real side is cut
into the same kind of pairs (each real clip and the audio just before it), so the drifts read
"÷ how far real music moves on from its own past". Without it the drifts are unavailable.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from samplegan_tune.core.errors import UserInputError

if TYPE_CHECKING:  # torch is imported lazily: the CLI imports this module for --help
    import torch

MIN_CLIP_SECONDS = 1.0
PRIMER_SECONDS = 3.0  # what --primers contributes: the audio just before a continuation
MIN_RATE, MAX_RATE = 1000, 192000
SCORE_NOTE = "quality/score: lower is better; formula in samplegan_tune/judge/metrics.py"
DETECTORS = "collapse/detectors"  # every rollout detector that fires; the first is the reason
logger = logging.getLogger("samplegan_tune")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `evaluate` options to `parser`; `evaluate_from_args` runs them."""
    parser.add_argument(
        "--real",
        nargs="+",
        required=True,
        metavar="PATH",
        help="real audio: files and/or folders (searched recursively)",
    )
    parser.add_argument(
        "--generated",
        nargs="+",
        required=True,
        metavar="PATH",
        help="generated audio to score: files and/or folders",
    )
    parser.add_argument(
        "--primers",
        nargs="+",
        metavar="PATH",
        help="the audio each --generated file continues (one file each, matched in sorted "
        f"order): adds the drift metrics (key, tempo, timbre, level vs its last "
        f"{PRIMER_SECONDS:g} s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--embedding",
        metavar="FILE.pt",
        help="TorchScript model: (B, T) audio -> (B, E); default log-mel",
    )
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz")
    parser.add_argument(
        "--clip-seconds",
        type=float,
        default=4.0,
        help=f"clip length, at least {MIN_CLIP_SECONDS:g} (the music embedding needs 3)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also score a scale made of the --real audio: its clips split in halves (one "
        "half the reference, the other real vs real), and that half's first second "
        "repeated, its last --segment samples looped, and noise at its level",
    )
    parser.add_argument("--segment", type=int, default=500, help="the loop of --scale, samples")


def evaluate_from_args(args: argparse.Namespace) -> int:
    """`run_evaluate` with the options of `add_evaluate_arguments`."""
    scale_segment = args.segment if args.scale else None
    return run_evaluate(
        args.real,
        args.generated,
        args.sample_rate,
        args.json,
        args.embedding,
        args.clip_seconds,
        scale_segment,
        args.primers,
    )


def run_evaluate(
    real: list[str],
    generated: list[str],
    sample_rate: int = 16000,
    as_json: bool = False,
    embedding: str | None = None,
    clip_seconds: float = 4.0,
    scale_segment: int | None = None,
    primers: list[str] | None = None,
) -> int:
    """Print every metric, the quality score and the collapse detectors of `generated` vs
    `real` (`collapse/reason` the first that fires, `collapse/detectors` all of them).

    Args:
        real: files/folders of real audio.
        generated: files/folders of generated audio.
        sample_rate: rate both are resampled to, Hz.
        as_json: print one JSON object (unavailable metrics null, reasons under
            "unavailable") instead of a table.
        embedding: a TorchScript embedding model file, or None for log-mel features.
        clip_seconds: clip length; a file's remainder shorter than that is dropped.
        scale_segment: when given, the real clips are split in halves: the even ones are the
            reference, the odd ones give the scale (`scale.reference_sets`; real vs real, the
            first second repeated, this many samples looped, noise), and the generated set's
            position on it (0 = real, 1 = the loop).
        primers: files/folders, one file per generated file (sorted order): what each
            continues (module docstring); None leaves the drift metrics unavailable.

    Raises:
        UserInputError: a bad option, a missing path, an empty folder, no decodable audio, or
            no file as long as one clip; the message names the culprit.
    """
    import torch

    from samplegan_tune.judge.collapse import REASON_METRIC, rollout_reasons
    from samplegan_tune.judge.features import LogMelEmbedding, TorchScriptEmbedding
    from samplegan_tune.judge.metrics import RealReference, evaluate_clips

    _check_options(sample_rate, clip_seconds)
    model = TorchScriptEmbedding(embedding) if embedding else LogMelEmbedding(sample_rate)
    real_before, real_clips, gen_before, gen_clips = _load_sets(
        real, generated, primers, sample_rate, clip_seconds
    )
    if scale_segment is not None:  # the even clips the reference, the odd ones the scale's
        _check_scale_input(real_clips, scale_segment, clip_seconds, sample_rate)
        real_clips, halves = real_clips[0::2], real_clips[1::2]
        real_before = real_before if real_before is None else real_before[0::2]
    with torch.no_grad():
        reference = RealReference.from_clips(real_clips, sample_rate, model, primers=real_before)
        values, reasons = evaluate_clips(gen_clips, reference, primers=gen_before)
        fired = rollout_reasons(gen_clips, reference)
        extra = {} if scale_segment is None else _scale(halves, reference, scale_segment, values)
    counts = {"clips/real": len(real_clips), "clips/generated": len(gen_clips)}
    report = {**values, REASON_METRIC: fired[0] if fired else None, DETECTORS: fired}
    report.update({**counts, **extra})
    print(_render(report, reasons, as_json))
    return 0


def _render(report: dict[str, object], reasons: dict[str, str], as_json: bool) -> str:
    if as_json:  # unavailable metrics null, their reasons under "unavailable"
        return json.dumps({**report, "unavailable": reasons}, indent=2, ensure_ascii=False)
    return format_table(report, reasons)


def _check_options(sample_rate: int, clip_seconds: float) -> None:
    if not MIN_RATE <= sample_rate <= MAX_RATE:  # as TrainConfig allows; 1e9 Hz ate 24 GB
        raise UserInputError(f"--sample-rate {sample_rate}: must be {MIN_RATE} ... {MAX_RATE} Hz")
    if not (math.isfinite(clip_seconds) and clip_seconds >= MIN_CLIP_SECONDS):
        raise UserInputError(f"--clip-seconds {clip_seconds}: must be ≥ {MIN_CLIP_SECONDS:g}")


def _load_sets(
    real: list[str],
    generated: list[str],
    primers: list[str] | None,
    sample_rate: int,
    clip_seconds: float,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(real primers, real clips, generated primers, generated clips); the primers are None
    without `primers`. A silent --real set is refused."""
    real_before = gen_before = None
    if primers:
        real_before, real_clips = primed_clips(real, sample_rate, clip_seconds, "--real")
        gen_before, gen_clips = continuations(primers, generated, sample_rate, clip_seconds)
    else:
        real_clips = load_clips(real, sample_rate, clip_seconds, "--real")
        gen_clips = load_clips(generated, sample_rate, clip_seconds, "--generated")
    _check_not_silent(real_clips)
    return real_before, real_clips, gen_before, gen_clips


SILENT_DBFS = -80.0  # a --real set whose every clip is quieter holds no music to score against


def _check_not_silent(clips: torch.Tensor) -> None:
    """Refuse a silent --real set (every score against it would mean nothing)."""
    from samplegan_tune.audio.sound import rms_dbfs

    loudest = float(rms_dbfs(clips).max())
    if loudest < SILENT_DBFS:
        raise UserInputError(
            f"--real: every clip is silent (the loudest at {loudest:.0f} dBFS RMS, below "
            f"{SILENT_DBFS:g}); there is no music to score against"
        )


def _check_scale_input(clips: torch.Tensor, segment: int, seconds: float, rate: int) -> None:
    if len(clips) < 4:
        raise UserInputError(f"--scale: needs ≥ 4 --real clips to split, got {len(clips)}")
    if seconds < 2 * MIN_CLIP_SECONDS:
        raise UserInputError(f"--scale: needs --clip-seconds ≥ {2 * MIN_CLIP_SECONDS:g}")
    if not 0 < segment <= rate:
        raise UserInputError(f"--segment {segment}: must be 1 ... {rate} samples")


def _scale(
    halves: torch.Tensor, reference: object, segment: int, values: dict[str, float | None]
) -> dict[str, float | None]:
    """`scale/<reference>` scores from the held-back half, and the generated set's position."""
    from samplegan_tune.judge.metrics import SCORE, evaluate_clips
    from samplegan_tune.judge.scale import PRIMER_SECONDS, position, reference_sets

    primer = min(round(PRIMER_SECONDS * reference.sample_rate), halves.shape[1] // 2)
    scale = {}
    rate = reference.sample_rate
    for name, (clips, again) in reference_sets(halves, primer, segment, rate).items():
        scale[name] = evaluate_clips(clips, reference, again)[0][SCORE]
    where = position(values[SCORE], scale) if values[SCORE] is not None else math.nan
    shown = {f"scale/{name}": score for name, score in scale.items()}
    return {**shown, "scale/position": where if math.isfinite(where) else None}


def load_clips(
    paths: Sequence[str], sample_rate: int, clip_seconds: float, option: str
) -> torch.Tensor:
    """Decode `paths` and cut every file into non-overlapping clips: (N, clip samples).

    Raises:
        UserInputError: prefixed with `option`, for bad paths, nothing decodable, or no file
            as long as one clip.
    """
    import torch

    size = round(clip_seconds * sample_rate)
    items = _decoded(paths, sample_rate, option)
    clips = []
    for name, audio in items:
        if audio.numel() < size:
            logger.warning(
                "%s: %s is shorter than one %g s clip; skipped", option, name, clip_seconds
            )
        clips.append(audio[: audio.numel() // size * size].reshape(-1, size))
    found = torch.cat(clips)
    if len(found) == 0:
        longest = max(a.numel() for _, a in items) / sample_rate
        raise UserInputError(
            f"{option}: no file is as long as one {clip_seconds:g} s clip (the longest of "
            f"{len(items)} is {longest:.2f} s); pass a shorter --clip-seconds (≥ "
            f"{MIN_CLIP_SECONDS:g})"
        )
    return found


def primed_clips(
    paths: Sequence[str], sample_rate: int, clip_seconds: float, option: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every clip of `paths` that has `PRIMER_SECONDS` of the same file before it:
    (primers (N, P), clips (N, T)).

    Raises:
        UserInputError: as `load_clips`, or no file holds a primer and a clip.
    """
    import torch

    primer, size = round(PRIMER_SECONDS * sample_rate), round(clip_seconds * sample_rate)
    pairs = [
        (audio[start - primer : start], audio[start : start + size])
        for _, audio in _decoded(paths, sample_rate, option)
        for start in range(primer, audio.numel() - size + 1, size)
    ]
    if not pairs:
        raise UserInputError(
            f"{option}: with --primers, a file must hold {PRIMER_SECONDS:g} s of primer and a "
            f"{clip_seconds:g} s clip; none does"
        )
    return torch.stack([p for p, _ in pairs]), torch.stack([c for _, c in pairs])


def continuations(
    primers: Sequence[str], generated: Sequence[str], sample_rate: int, clip_seconds: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(each primer file's last `PRIMER_SECONDS` (B, P), the first clip of the generated file
    matched with it in sorted order (B, T)).

    Raises:
        UserInputError: the counts differ, or a file is too short (named).
    """
    import torch

    before = _decoded(primers, sample_rate, "--primers")
    after = _decoded(generated, sample_rate, "--generated")
    if len(before) != len(after):
        raise UserInputError(
            f"--primers: {len(before)} files for {len(after)} --generated files; give one "
            "primer per generated file (matched in sorted order)"
        )
    primer, size = round(PRIMER_SECONDS * sample_rate), round(clip_seconds * sample_rate)
    for (name, audio), need, option in [
        *((item, primer, "--primers") for item in before),
        *((item, size, "--generated") for item in after),
    ]:
        if audio.numel() < need:
            raise UserInputError(f"{option}: {name} is shorter than {need / sample_rate:g} s")
    heads = torch.stack([audio[-primer:] for _, audio in before])
    return heads, torch.stack([audio[:size] for _, audio in after])


def _decoded(paths: Sequence[str], sample_rate: int, option: str) -> list[tuple[str, torch.Tensor]]:
    from samplegan_tune.audio.sound import find_audio_files, load_many

    try:
        return load_many(find_audio_files(list(paths)), sample_rate)
    except UserInputError as err:
        raise UserInputError(f"{option}: {err}") from err


def format_table(report: dict[str, object], reasons: dict[str, str]) -> str:
    """A readable two-column table of `report`; "n/a (why)" for values that are unavailable."""
    width = max(len(name) for name in report)
    lines = []
    for name, value in report.items():
        if isinstance(value, float):
            shown = f"{value:.4g}" + (f"  ({reasons[name]})" if name in reasons else "")
        elif value is None:
            shown = f"n/a ({reasons[name]})" if name in reasons else "none"
        elif isinstance(value, list):
            shown = ", ".join(value) or "none"
        else:
            shown = str(value)
        lines.append(f"{name:<{width}}  {shown}")
    lines.append(f"{'':<{width}}  ({SCORE_NOTE})")
    return "\n".join(lines)
