"""`samplegan-tune cluster validate FILE`: check a Ray cluster-launcher YAML offline.

`ray up` has no dry run. This runs Ray's own config preparation and JSON-schema validation,
then our checks: the Docker image's Ray version is the installed one, the head runs no trials,
GPUs are declared where the provider cannot detect them (GCP), the setup commands install
this project, a shared storage path (SAMPLEGAN_STORAGE) is set for multi-node runs, and
token authentication stays on (every `ray start` sets RAY_AUTH_MODE=token; the token file is
mounted on every node).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import ray

from samplegan_tune.core.errors import UserInputError
from samplegan_tune.core.fileio import read_yaml

STORAGE_VAR = "SAMPLEGAN_STORAGE"
AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_FILE = ".ray/auth_token"  # where Ray looks for the cluster token, under ~
_IMAGE_VERSION = re.compile(r"rayproject/ray(?:-ml)?:(\d+\.\d+\.\d+)")


def validate_cluster_file(path: str | Path) -> dict[str, Any]:
    """The prepared config of a valid file; UserInputError naming the file and key if not."""
    path = Path(path)
    raw = read_yaml(path, "cluster file")
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: expected a mapping (a Ray cluster config)")
    try:
        _check_worker_counts(raw)  # before Ray's check, which does not name the node type
        prepared = _ray_checks(raw)
        _our_checks(raw, prepared)
    except UserInputError as err:
        raise UserInputError(f"{path}: {err}") from err
    return prepared


def _ray_checks(raw: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    quiet = logging.getLogger("ray.autoscaler")
    level, quiet.level = quiet.level, logging.WARNING
    try:
        prepared = prepare_config(copy.deepcopy(raw))
        validate_config(prepared)
    except Exception as err:  # jsonschema.ValidationError, ValueError, KeyError, ...
        message = getattr(err, "message", None) or str(err)
        where = "/".join(str(p) for p in getattr(err, "absolute_path", [])) or "config"
        raise UserInputError(f"Ray rejects {where}: {message.splitlines()[0]}") from err
    finally:
        quiet.level = level
    return prepared


def _our_checks(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    _check_image(raw)
    _check_head_runs_nothing(raw, prepared)
    _check_gpus_declared(prepared)
    _check_token_auth(raw)
    commands = [
        str(c) for key in ("setup_commands", "head_setup_commands") for c in raw.get(key) or []
    ]
    if not any("pip" in c and re.search(r"samplegan[-_]tune", c) for c in commands):
        raise UserInputError("setup_commands: none installs this project (samplegan-tune)")
    if _multi_node(prepared) and not any(STORAGE_VAR in c for c in commands):
        raise UserInputError(
            f"setup_commands: a multi-node cluster needs shared storage: export {STORAGE_VAR}"
            "=s3://… (or gs://…, or an NFS path) there"
        )


def _check_image(raw: dict[str, Any]) -> None:
    image = (raw.get("docker") or {}).get("image")
    if image is None:
        return  # no Docker: the setup commands install Ray themselves
    match = _IMAGE_VERSION.search(str(image))
    if not match:
        raise UserInputError(f"docker.image={image!r}: expected rayproject/ray:<version>-…")
    if match.group(1) != ray.__version__:
        raise UserInputError(
            f"docker.image={image!r}: Ray {match.group(1)} in the image, {ray.__version__} "
            f"installed here; use rayproject/ray:{ray.__version__}-py311-gpu"
        )


def _check_worker_counts(raw: dict[str, Any]) -> None:
    for name, node in (raw.get("available_node_types") or {}).items():
        if not isinstance(node, dict):
            continue  # Ray's schema check names it
        low, high = node.get("min_workers", 0), node.get("max_workers", 0)
        if low > high:
            raise UserInputError(
                f"available_node_types.{name}: min_workers={low} exceeds max_workers={high}"
            )


def _check_head_runs_nothing(raw: dict[str, Any], prepared: dict[str, Any]) -> None:
    head = prepared["head_node_type"]
    cpus = prepared["available_node_types"][head].get("resources", {}).get("CPU")
    starts = " ".join(str(c) for c in raw.get("head_start_ray_commands") or [])
    if cpus != 0 and "--num-cpus=0" not in starts:
        raise UserInputError(
            f"available_node_types.{head}.resources: the head must run no trials "
            "(CPU: 0, or --num-cpus=0 in head_start_ray_commands)"
        )


def _check_gpus_declared(prepared: dict[str, Any]) -> None:
    if prepared["provider"].get("type") != "gcp":
        return
    for name, node in prepared["available_node_types"].items():
        accelerators = node.get("node_config", {}).get("guestAccelerators")
        if accelerators and not node.get("resources", {}).get("GPU"):
            raise UserInputError(
                f"available_node_types.{name}.resources: GCP needs the GPU count declared "
                "(e.g. {GPU: 1}) for a node type with guestAccelerators"
            )


def _check_token_auth(raw: dict[str, Any]) -> None:
    """Token authentication stays on: every node gets the token and refuses to start without."""
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for command in map(str, raw.get(key) or []):
            if "ray start" in command and f"{AUTH_MODE}=token" not in command:
                raise UserInputError(
                    f"{key}: {command!r} must set {AUTH_MODE}=token (Ray then refuses to "
                    "start a node without the cluster's token instead of running open)"
                )
    mounts = raw.get("file_mounts") or {}
    if not any(str(target).endswith(TOKEN_FILE) for target in mounts):
        raise UserInputError(
            f"file_mounts: every node needs the cluster's token: add '~/{TOKEN_FILE}: "
            f"~/{TOKEN_FILE}' (create it once with `ray get-auth-token --generate`)"
        )


def _multi_node(prepared: dict[str, Any]) -> bool:
    return prepared.get("max_workers", 0) > 0
