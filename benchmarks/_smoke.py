"""What the benchmarks' `--smoke` runs share: their inputs made at a tiny size in a temporary
folder (synthetic songs as WAVs, a model trained for a few steps), so that every script runs
end to end on a CPU in seconds and cannot rot (tests/test_benchmarks.py runs each one).

Not a benchmark: the scripts import it (`python benchmarks/X.py` puts this folder on the path).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

RATE = 16000
CLI = [sys.executable, "-m", "samplegan_tune.cli"]


def folder(name: str) -> Path:
    """A new temporary folder for one smoke run's inputs and outputs (under $TMPDIR), named on
    stdout so that they can be looked at."""
    path = Path(tempfile.mkdtemp(prefix=f"smoke-{name}-"))
    print(f"smoke: inputs in {path}", flush=True)
    return path


def tiny_sets(beside: list[str] | tuple[str, ...] = ()) -> list[str]:
    """`KEY=VALUE` overrides for `--set`: the `smoke` space's fixed values (tiny models and
    windows, the sizes the tests and the README's demo search use), but for the keys that the
    overrides `beside` already set."""
    from samplegan_tune.tuning.space import load_space

    given = {pair.split("=", 1)[0] for pair in beside}
    fixed = load_space("smoke").fixed
    return [f"{key}={value}" for key, value in fixed.items() if key not in given]


def write_songs(where: Path, count: int, seconds: float = 30.0, seed: int = 0) -> list[str]:
    """`count` of the built-in corpus's synthetic songs, one per seed from `seed`, `seconds`
    (≤ 44: longer, it splits them) each, as 16 kHz WAVs in `where`; their paths."""
    from samplegan_tune.audio.sound import write_wav
    from samplegan_tune.audio.synthetic import synthetic_songs

    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        for name, song in synthetic_songs(seconds, RATE, seed=seed + i):
            path = where / f"{i:02d}-{name}.wav"
            write_wav(path, song, RATE)
            paths.append(str(path))
    return paths


def train_model(out: Path, data: list[str], steps: int) -> Path:
    """`samplegan-tune train` of the tiny config on `data` for `steps` steps on the CPU, into the
    run folder `out` (returned); exits with the command's output when it fails."""
    sets = [arg for pair in tiny_sets() for arg in ("--set", pair)]
    command = ["train", "--data", *data, "--steps", str(steps), "--out", str(out), *sets]
    done = subprocess.run(
        [*CLI, *command, "--device", "cpu", "--log-every", str(steps)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"smoke: train failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return out
