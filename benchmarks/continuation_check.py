"""Does a trained model keep going? Per-second loudness and flatness of a primed continuation.

    python benchmarks/continuation_check.py RUN_OR_CHECKPOINT PRIMER_AUDIO \
        [--offset 60] [--prime-seconds 1] [--seconds 8] [--seeds 0 1 2] [--wav OUT.wav]
    python benchmarks/continuation_check.py --smoke

Takes `--prime-seconds` of PRIMER_AUDIO starting at `--offset` s (use a song the model never
trained on), continues it for `--seconds`, and prints the RMS level (dBFS) and median spectral
flatness of every second next to the primer's. The target for a default run on real music:
every second within 12 dB of the primer (the seed paper's failure is a transient, then silence
or a stagnant waveform). `--smoke` makes both inputs in a temporary folder: two synthetic songs,
a tiny model trained on the first for 4 steps, 2 s continued from the second (seeds 0 and 1).
"""

from __future__ import annotations

import argparse
import math

import torch
from _smoke import folder, train_model, write_songs

from samplegan_tune.audio.sound import load_audio, normalise_loudness, rms_dbfs, write_wav
from samplegan_tune.models.checkpoint import load_model
from samplegan_tune.train.rollout import rollout


def flatness(x: torch.Tensor, n_fft: int = 512) -> float:
    """Median per-frame spectral flatness (white noise ~0.56, music ~0.05-0.15, tone ~0)."""
    spec = (
        torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True)
        .abs()
        .pow(2)
        + 1e-12
    )
    per_frame = spec.log().mean(0).exp() / spec.mean(0)
    return float(per_frame.median())


def main() -> None:
    """Continue the primer with each seed; print every second's level and flatness beside the
    primer's, and the largest gap against the 12 dB target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", help="a run folder, checkpoint or exported model")
    parser.add_argument("primer", nargs="?", help="audio the model never trained on")
    parser.add_argument("--offset", type=float, default=60.0)
    parser.add_argument("--prime-seconds", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--wav", help="write the first seed's primer + continuation here")
    parser.add_argument("--smoke", action="store_true", help="a tiny model trained here, 2 s")
    args = parser.parse_args()
    if args.smoke:
        _smoke_inputs(args)
    elif not (args.model and args.primer):
        parser.error("MODEL and PRIMER are required (or --smoke)")
    model = load_model(args.model)
    rate = model.cfg.sample_rate
    song = load_audio(args.primer, rate)
    if not math.isnan(model.cfg.normalise_dbfs):
        song = normalise_loudness(song, model.cfg.normalise_dbfs)
    start = int(args.offset * rate)
    primer = song[start : start + int(args.prime_seconds * rate)]
    primer_db = float(rms_dbfs(primer))
    print(f"primer: {primer_db:.1f} dBFS, flatness {flatness(primer):.3f}")
    worst = 0.0
    for seed in args.seeds:
        audio = rollout(model, primer[None], int(args.seconds * rate), seed)[0]
        seconds = audio.view(-1, rate)
        levels = [float(rms_dbfs(s)) for s in seconds]
        flat = [flatness(s) for s in seconds]
        worst = max(worst, max(abs(lv - primer_db) for lv in levels))
        print(f"seed {seed}: dBFS " + " ".join(f"{lv:6.1f}" for lv in levels))
        print("        flatness " + " ".join(f"{f:6.3f}" for f in flat))
        if args.wav and seed == args.seeds[0]:
            write_wav(args.wav, torch.cat([primer, audio]), rate)
    verdict = "within" if worst <= 12 else "OUTSIDE"
    print(f"largest gap to the primer: {worst:.1f} dB ({verdict} the 12 dB target)")


def _smoke_inputs(args: argparse.Namespace) -> None:
    """For --smoke: two synthetic songs in a temporary folder, a model trained on the first for
    4 steps, 2 s continued from 1 s of the second with seeds 0 and 1, the WAV beside them."""
    where = folder("continuation-check")
    train, primer = write_songs(where / "music", 2)
    args.model = str(train_model(where / "run", [train], steps=4))
    args.primer, args.offset, args.seconds, args.seeds = primer, 5.0, 2.0, [0, 1]
    args.wav = args.wav or str(where / "continuation.wav")


if __name__ == "__main__":
    main()
