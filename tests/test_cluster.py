"""Every cluster YAML validates offline; broken copies are refused naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.tuning.cluster import validate_cluster_file

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"
FILES = sorted(CLUSTER.glob("*.yaml"))


def test_there_are_the_three_configurations() -> None:
    assert {f.name for f in FILES} >= {"gpu.yaml", "gcp-gpu.yaml", "onprem.yaml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_cluster_file_validates(path: Path) -> None:
    prepared = validate_cluster_file(path)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_the_command_validates_and_refuses(tmp_path: Path) -> None:
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "samplegan_tune.cli",
            "cluster",
            "validate",
            str(CLUSTER / "gpu.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**_load("gpu.yaml"), "max_wrokers": 3}))
    bad = subprocess.run(
        [sys.executable, "-m", "samplegan_tune.cli", "cluster", "validate", str(broken)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "max_wrokers" in bad.stderr and str(broken) in bad.stderr


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _break(name: str, change) -> dict:  # noqa: ANN001 - a function editing the dict
    config = copy.deepcopy(_load(name))
    change(config)
    return config


BROKEN = {
    "unknown key": ("gpu.yaml", lambda c: c.update(max_wrokers=3), "max_wrokers"),
    "head type missing": ("gpu.yaml", lambda c: c.pop("head_node_type"), "head_node_type"),
    "min > max workers": (
        "gpu.yaml",
        lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=9, max_workers=2),
        "gpu_worker",
    ),
    "other Ray version": (
        "gpu.yaml",
        lambda c: c["docker"].update(image="rayproject/ray:2.9.0-py311-gpu"),
        "docker.image",
    ),
    "head runs trials": (
        "gpu.yaml",
        lambda c: (
            c["available_node_types"]["head"].update(resources={}),
            c.update(head_start_ray_commands=["RAY_AUTH_MODE=token ray start --head"]),
        ),
        "available_node_types.head.resources",
    ),
    "GCP GPUs undeclared": (
        "gcp-gpu.yaml",
        lambda c: c["available_node_types"]["gpu_worker"].update(resources={"CPU": 4}),
        "gpu_worker.resources",
    ),
    "project not installed": (
        "gpu.yaml",
        lambda c: c.update(setup_commands=[c["setup_commands"][0]]),
        "samplegan-tune",
    ),
    "no shared storage": (
        "onprem.yaml",
        lambda c: c.update(setup_commands=[c["setup_commands"][1]]),
        "SAMPLEGAN_STORAGE",
    ),
    "token auth off": (
        "gcp-gpu.yaml",
        lambda c: c.update(worker_start_ray_commands=["ray start --address=$RAY_HEAD_IP:6379"]),
        "worker_start_ray_commands",
    ),
    "token not on the nodes": ("onprem.yaml", lambda c: c.pop("file_mounts"), "file_mounts"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_copies_are_refused_naming_the_key(case: str, tmp_path: Path) -> None:
    name, change, word = BROKEN[case]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(_break(name, change)))
    with pytest.raises(UserInputError) as err:
        validate_cluster_file(path)
    assert word in str(err.value) and str(path) in str(err.value), str(err.value)
