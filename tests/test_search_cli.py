"""The search commands refuse bad input up front, in one line with exit 2, leaving nothing
behind: `--try` points the space cannot take, a local Ray of no CPUs, and a damaged
search.json (the real command in a subprocess, real files)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.space import load_space
from samplegan_tune.tuning.start_points import parse_point
from tests.conftest import cli, search_args, smoke_experiment


def assert_one_line_refusal(done, *words: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], done.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("point", "words"),
    [
        ("nosuch=3", ["unknown key 'nosuch'", "lr_g"]),  # was ignored
        ("segment=512", ["segment is fixed by the space at 128", "lr_g"]),  # was ignored
        ("sample_rate=22050", ["sample_rate is a data setting", "lr_g"]),  # was ignored
        ("lr_g=abc", ["lr_g=abc is not a finite number", "0.0001...0.003"]),  # traceback
        ("adv_loss=bogus", ["adv_loss=bogus is not one of hinge, lsgan"]),  # traceback
        ("lr_g=10", ["lr_g=10 is outside the space's range 0.0001...0.003"]),  # ran
        ("ae_pretrain_steps=3", ["only when model_family is latent"]),  # was dropped
        ("model_family=latent,ae_pretrain_steps=9", ["ae_pretrain_steps=9", "2...4"]),
        ("lr_g=1e-3,lr_g=2e-3", ["lr_g is given twice"]),
        ("lr_g", ["cannot read 'lr_g'"]),
    ],
)
def test_a_try_point_the_space_cannot_take_is_refused(env, tmp_path: Path, point, words) -> None:
    """One line naming the key and what is allowed, exit 2, and no experiment folder: the
    name stays free (a bad value used to fail mid-search and leave a half-made one)."""
    storage = tmp_path / "results"
    done = _search_smoke(env, storage, "--try", "lr_d=1e-3", "--try", point)
    assert_one_line_refusal(done, f"--try {point!r}", *words)
    assert not storage.exists()


def test_a_try_point_the_space_can_take_is_kept_as_optuna_names_it() -> None:
    space = load_space("wide")
    point = parse_point("model_family=latent,ae_pretrain_steps=300,context_per_segment=6", space)
    assert point == {"model_family": "latent", "ae_pretrain_steps": 300, "context_per_segment": 6}
    assert parse_point("lr_g=1e-3,adv_loss=lsgan", load_space("smoke").smoke()) == {
        "lr_g": 1e-3,
        "adv_loss": "lsgan",
    }


@pytest.mark.parametrize("cpus", ["0", "-2"])
def test_a_local_ray_of_no_cpus_is_refused(env, tmp_path: Path, cpus: str) -> None:
    """--num-cpus 0 ended in a Ray traceback after the experiment folder was made."""
    storage = tmp_path / "results"
    done = _search_smoke(env, storage, "--num-cpus", cpus)
    assert_one_line_refusal(done, f"--num-cpus {cpus}", "≥ 1")
    assert not storage.exists()
    exp = _experiment(tmp_path / "exp")
    before = _snapshot(exp.folder)
    assert_one_line_refusal(cli(env, "resume", str(exp.folder), "--num-cpus", cpus), "--num-cpus")
    assert _snapshot(exp.folder) == before


def _search_smoke(env: dict[str, str], storage: Path, *more: str) -> subprocess.CompletedProcess:
    """`samplegan-tune search --space smoke --storage STORAGE --name x MORE` (no --num-cpus)."""
    return cli(env, "search", "--space", "smoke", "--storage", str(storage), "--name", "x", *more)


def _experiment(folder: Path) -> Experiment:
    """An experiment description as `search` writes it (no search run: nothing reads further)."""
    exp = smoke_experiment(folder)
    exp.save()
    return exp


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("space_yaml", "params: [unclosed", ["space_yaml is not valid YAML"]),
        ("space_yaml", "description: d\nparams: {nosuch: {int: [1, 2]}}", ["unknown key"]),
        ("space_yaml", 5, ["space_yaml must be the space file's text"]),
        ("data", "synthetic", ["data must be a list", "'synthetic'"]),
        ("data", [1, 2], ["data must be a list"]),
        ("data", [], ["data must be a list"]),
    ],
)
def test_a_damaged_search_json_is_refused_in_one_line(env, tmp_path, key, value, words) -> None:
    """A broken space_yaml or a data that is no list of paths gave tracebacks in `resume`
    and `leaderboard`; now one line naming the file and the key, exit 2, nothing written."""
    folder = _experiment(tmp_path / "exp").folder
    description = folder / "search.json"
    values = json.loads(description.read_text())
    description.write_text(json.dumps({**values, key: value}, indent=2))
    before = _snapshot(folder)
    for command in ("leaderboard", "resume"):
        done = cli(env, command, str(folder))
        assert_one_line_refusal(done, str(description), *words)
        assert _snapshot(folder) == before


@pytest.mark.slow
def test_a_truncated_tune_state_is_refused_in_one_line(env, tmp_path: Path) -> None:
    """Ray writes its experiment state in place while a search runs: a disk that filled
    mid-write leaves it truncated. `resume` and `leaderboard` gave Ray's traceback; now one
    line naming the file, exit 2, nothing written."""
    done = cli(env, *search_args("smoke", tmp_path, "full", "--num-samples", "1"))
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "full"
    [state] = sorted(folder.glob("experiment_state-*.json"))
    text = state.read_text()
    state.write_text(text[: len(text) // 2])  # what a full disk leaves
    before = _snapshot(folder)
    for command in ("resume", "leaderboard"):
        refused = cli(env, command, str(folder))
        assert_one_line_refusal(refused, str(state), "damaged", "disk was full")
        assert _snapshot(folder) == before
