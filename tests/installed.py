"""A Python environment with this project installed from a wheel, and no view of the sources.

Installing torch, Ray and the rest again would take minutes and gigabytes, so the new
environment sees the packages of the one running the tests through a folder of links that
leaves out this project (and its editable-install hook): what it imports as `samplegan_tune`
can only come from what was installed into it.
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path

OWN = ("samplegan_tune", "__editable__", "__pycache__")


def dependency_links(folder: Path) -> Path:
    """`folder` filled with links to every installed package except this project."""
    folder.mkdir(parents=True)
    for source in map(Path, site.getsitepackages()):
        for entry in source.iterdir():
            if entry.name.startswith(OWN) or entry.suffix == ".pth":
                continue
            target = folder / entry.name
            if not target.exists():
                target.symlink_to(entry)
    return folder


def fresh_env(folder: Path) -> Path:
    """A new virtual environment at `folder` that sees our dependencies but not the project.

    Returns its bin folder.
    """
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = dependency_links(folder / "deps")
    (Path(purelib) / "samplegan-test-deps.pth").write_text(f"{deps}\n")
    # Ray's command, as a node image that has Ray installed provides it.
    ray = folder / "bin" / "ray"
    ray.write_text(f"#!{python}\nfrom ray.scripts.scripts import main\nmain()\n")
    ray.chmod(0o755)
    return folder / "bin"
