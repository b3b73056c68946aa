"""`benchmarks/gpu_check.sh --cpu`: the GPU machine's one prepared check, run at a tiny size on
the CPU so that it never rots before a session is lent a GPU."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path), "SAMPLEGAN_CACHE": str(tmp_path / "c")}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    report = (tmp_path / "gpu_check.md").read_text()
    assert done.returncode == 0, report[-3000:]
    assert "gpu_check (cpu): every step passed" in report
    assert "FAIL" not in report
    for figure in ("MFU", "baseline (fused_step=false)", "| 2 |", "real continuation"):
        assert figure in report, figure
    rows = (tmp_path / "gpu_check.jsonl").read_text().splitlines()
    assert len(rows) >= 5 + 2  # five mfu.py runs, two packing rows
