"""The project as a user's cluster node gets it: a wheel built from a clean export of HEAD,
installed (not editable) into an environment that cannot see the source tree, run from an
empty folder: list the spaces, search a packaged space, export, generate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from tests.installed import fresh_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of the committed HEAD (`git archive`: no untracked or ignored file in it)."""
    src = tmp_path / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
    )
    (wheel,) = dist.glob("samplegan_tune-*.whl")
    return wheel


def test_installed_wheel_searches_exports_and_generates(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    spaces = {f"samplegan_tune/search_spaces/{n}.yaml" for n in ("smoke", "narrow", "wide")}
    assert spaces <= shipped
    env_bin = fresh_env(tmp_path / "env")
    install = subprocess.run(
        [str(env_bin / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]

    work = tmp_path / "work"  # an empty working folder, as on a fresh node
    work.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(SAMPLEGAN_CACHE=str(tmp_path / "cache"), RAY_TMPDIR=ray_tmp)

    def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        done = subprocess.run(
            args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        return done

    try:
        where = run(
            str(env_bin / "python"),
            "-c",
            "import samplegan_tune.tuning.space as s; "
            "print(s.__file__); print(*s.builtin_spaces().values(), sep='\\n')",
        ).stdout
        assert all(line.startswith(str(tmp_path / "env")) for line in where.split()), where
        assert "wide" in run(str(env_bin / "samplegan-tune"), "spaces").stdout
        searched = run(
            str(env_bin / "samplegan-tune"),
            "search",
            "--space",
            "narrow",
            "--smoke",
            "--num-samples",
            "2",
            "--num-cpus",
            "2",
            "--name",
            "n",
        )
        assert "[search] 2/2 done" in searched.stdout
        run(str(env_bin / "samplegan-tune"), "export", "results/n", "--out", "model")
        check = (
            "import sys; from samplegan_tune.cli.main import main; "
            "code = main(['generate', 'model', '--seconds', '1', '--out', 'x.wav']); "
            "assert code == 0, code; "
            "print(sorted(m for m in ('ray', 'optuna') if m in sys.modules))"
        )
        assert run(str(env_bin / "python"), "-c", check).stdout.strip().endswith("[]")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    audio, rate = sf.read(work / "x.wav")
    assert rate == 16000 and len(audio) == 16000 and abs(audio).max() > 0
