"""Every benchmark's `--smoke` (issue 18): the script runs end to end at a tiny size on the CPU,
making its own input, and prints its figures, so that none rots between the runs that measure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")
)  # benchmarks/_smoke.py is what their --smoke shares, not a benchmark
# What a reader reads in each script's output: its table's rows or its key figures' names.
FIGURES = {
    "calibrate_metrics": ("| truth |", "Spearman of the score", "Orderings broken:"),
    "continuation_check": ("primer:", "seed 1: dBFS", "largest gap to the primer:"),
    "detector_precision": ("| detector | adversarial steps |", "2 trials", "policy"),
    "metrics_cost": ("rollouts (2 x 4 s)", "metrics / training interval:"),
    "mfu": ("MFU", "baseline (fused_step=false)", "generate:", "judge:"),
    "music_continuation": ("| real continuation |", "| untuned default", "| best of a"),
    "musicnn_reference": ("3 patches each",),
    "pack_trials": ("| 1 |", "| 2 |"),
    "search_efficiency": ("| 0 |", "median ratio over 1 seeds"),
    "train_throughput": ("cpu:", "hand-written loop / Trainer.step time ratio"),
    "tune_overhead": ("trial wall", "training steps"),
}
# Where a script writes files: the option that puts them into the test's folder, its value
# there, and a file the run must have written.
OUTPUTS = {
    "calibrate_metrics": ("--out", "calibration.md", "calibration.md"),
    "continuation_check": ("--wav", "continuation.wav", "continuation.wav"),
    "detector_precision": ("--out", "reports.jsonl", "reports.jsonl"),
    "mfu": ("--json", "mfu.jsonl", "mfu.jsonl"),
    "music_continuation": ("--out", "continuation", "continuation/set0.png"),
    "pack_trials": ("--json", "pack.jsonl", "pack.jsonl"),
}


def test_every_benchmark_has_its_figures_named_here() -> None:
    assert sorted(FIGURES) == SCRIPTS, "a new benchmark needs its --smoke and its FIGURES entry"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_runs_end_to_end_and_prints_its_figures(
    script: str, tmp_path: Path, env: dict[str, str]
) -> None:
    command = [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--smoke"]
    option, value, written = OUTPUTS.get(script, (None, None, None))
    if option:
        command += [option, str(tmp_path / value)]
    # One thread: a smoke run times nothing, and where another job holds one of two cores, a
    # second torch thread waits on it at every op (mfu.py's smoke: 300 s against 12 s). The
    # inputs a smoke run makes go to its temporary folder, here the test's.
    (tmp_path / "tmp").mkdir()
    env = {**env, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in FIGURES[script]:
        assert figure in done.stdout, f"{figure!r} not in:\n{done.stdout[-3000:]}"
    assert written is None or (tmp_path / written).is_file(), written
