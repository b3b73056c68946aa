"""optuna-dashboard and TensorBoard on a finished search: the study read through the dashboard's
HTTP API (objective name, learning curves, playable artifacts), the trials' event files read
with TensorBoard's own reader (HPARAMS with the quality metrics, rollout audio); and the
artifacts of a re-ranking replacing the earlier ones."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from ray.tune.result import TRAINING_ITERATION

from samplegan_tune.judge.collapse import REASON_METRIC
from samplegan_tune.judge.metrics import SCORE
from samplegan_tune.tuning import dashboard
from samplegan_tune.tuning.leaderboard import Entry, Leaderboard
from samplegan_tune.tuning.outcomes import TUNE_ID_ATTR
from samplegan_tune.tuning.search import OutcomeAwareOptunaSearch
from samplegan_tune.tuning.space import load_space
from samplegan_tune.tuning.trainable import ROLLOUT_TAG
from samplegan_tune.tuning.trial import REPORTS
from samplegan_tune.tuning.trial_events import BEST_SCORE, OUTCOME
from tests.conftest import cli, smoke_experiment

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-trial smoke search, ranked (survivors, or the flagged best attempts)."""
    root = tmp_path_factory.mktemp("dashboard")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "SAMPLEGAN_CACHE": str(root / "cache"), "RAY_TMPDIR": ray_tmp}
    try:
        result = cli(
            env,
            "search",
            "--space",
            "smoke",
            "--num-samples",
            "4",
            "--num-cpus",
            "2",
            "--storage",
            str(root / "results"),
            "--name",
            "tiny",
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optuna-dashboard sqlite:///" in result.stdout
    return root / "results" / "tiny"


@pytest.mark.slow
def test_dashboard_shows_objective_curves_and_media(searched: Path) -> None:
    board = json.loads((searched / "leaderboard.json").read_text())
    assert board["entries"], "ranked survivors or flagged best attempts"
    with _dashboard(searched) as get:
        studies = json.loads(get("/api/studies"))["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "tiny")
        study = json.loads(get(f"/api/studies/{study_id}"))
        assert study["objective_names"] == [SCORE]
        assert study["directions"] == ["minimize"]
        assert "lower is better" in _attrs(study)[dashboard.OBJECTIVE_ATTR]
        trials = {_attrs(t)[TUNE_ID_ATTR]: t for t in study["trials"]}
        for tune_id, trial in trials.items():  # every healthy report, and only those
            healthy = _healthy_reports(searched / f"trial_{tune_id}")
            assert {v["step"] for v in trial["intermediate_values"]} == healthy
        assert study["has_intermediate_values"] == any(
            t["intermediate_values"] for t in trials.values()
        )
        for entry in board["entries"]:
            trial = trials[entry["trial_id"]]
            files = {a["filename"]: a for a in trial["artifacts"]}
            rank = entry["rank"]
            for name, mimetype, magic in _expected_media(rank):
                assert files[name]["mimetype"] == mimetype
                url = f"/artifacts/{study_id}/{trial['trial_id']}/{files[name]['artifact_id']}"
                assert get(url).startswith(magic)
        ranked = {e["trial_id"] for e in board["entries"]}
        assert all(not t["artifacts"] for k, t in trials.items() if k not in ranked)


def _healthy_reports(trial_dir: Path) -> set[int]:
    """The reports of a Tune trial that carry a real score (no collapse, not flagged)."""
    lines = (trial_dir / "result.json").read_text().splitlines()
    reports = [json.loads(line) for line in lines]
    return {
        r["training_iteration"]
        for r in reports
        if not r.get("collapse/reason") and r.get(SCORE, 1e6) < 1e6
    }


@pytest.mark.slow
def test_tensorboard_reads_hparams_curves_and_audio(searched: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2

    board = json.loads((searched / "leaderboard.json").read_text())
    assert board["entries"], "ranked survivors or flagged best attempts"
    ranked = searched / f"trial_{board['entries'][0]['trial_id']}"
    params = {p.name for p in load_space("smoke").params}
    for folder in sorted(searched.glob("trial_*")):
        events = ea.EventAccumulator(str(folder), size_guidance={ea.AUDIO: 0, ea.IMAGES: 0})
        events.Reload()
        content = events.PluginTagToContent("hparams")
        data = {t: plugin_data_pb2.HParamsPluginData.FromString(c) for t, c in content.items()}
        experiment = data["_hparams_/experiment"].experiment
        metrics = {m.name.tag for m in experiment.metric_infos}
        assert {SCORE, BEST_SCORE} <= metrics
        started = data["_hparams_/session_start_info"].session_start_info.hparams
        assert set(started) == params | {OUTCOME}
        tags = events.Tags()
        assert ROLLOUT_TAG in tags["audio"] and f"{ROLLOUT_TAG}_spectrogram" in tags["images"]
        clip = events.Audio(ROLLOUT_TAG)[0]
        assert clip.content_type == "audio/wav" and clip.encoded_audio_string[:4] == b"RIFF"
        scores = [e.value for e in events.Scalars(SCORE)] if SCORE in tags["scalars"] else []
        assert all(v < 1e6 for v in scores), "the collapse sentinel is no score"
        if folder == ranked:
            outcome = started[OUTCOME].string_value
            passed = outcome in ("completed", "stopped_early", "stopped_by_budget")
            assert passed != bool(board["entries"][0]["flags"]), outcome
            if scores:
                assert min(scores) == events.Scalars(BEST_SCORE)[-1].value


def test_reranking_replaces_the_media_artifacts(tmp_path: Path) -> None:
    exp = smoke_experiment(tmp_path / "e", space_yaml="")
    exp.folder.mkdir()
    study = optuna.create_study(study_name=exp.name, storage=exp.optuna_storage())
    for tune_id in ("aaa", "bbb"):
        trial = study.ask()
        trial.set_user_attr(TUNE_ID_ATTR, tune_id)
        study.tell(trial, 1.0)
    dashboard.name_objective(exp)
    media = exp.folder / dashboard.MEDIA_DIR
    media.mkdir(parents=True)
    for name in ("rank1-generated.wav", "rank1-generated.png", "rank1-true.wav", "notes.txt"):
        (media / name).write_bytes(b"x")
    assert dashboard.attach_media(exp, _board("aaa")) == 3
    assert dashboard.attach_media(exp, _board("bbb")) == 3
    storage = exp.optuna_storage()
    study_id = storage.get_study_id_from_name(exp.name)
    attrs = storage.get_study_system_attrs(study_id)
    live = [k for k, v in attrs.items() if k.startswith("dashboard:artifacts:") and json.loads(v)]
    assert len(live) == 3 and len(list((exp.folder / dashboard.ARTIFACT_DIR).iterdir())) == 3
    assert exp.study().metric_names == [SCORE]
    assert dashboard.command(exp).startswith("optuna-dashboard sqlite:///")


def test_every_healthy_report_is_an_intermediate_value(tmp_path: Path) -> None:
    """Also the last one, which Ray hands only to on_trial_complete when ASHA stops the
    trial at max_t; a last report already seen is not told twice."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    searcher = OutcomeAwareOptunaSearch(
        space=space, metric=SCORE, mode="min", storage=storage, study_name="s", max_reports=3
    )
    for trial_id in ("stopped", "returned"):
        searcher.suggest(trial_id)
        for step, score in ((1, 5.0), (2, 3.0)):
            searcher.on_trial_result(trial_id, {SCORE: score, TRAINING_ITERATION: step})
    last = {SCORE: 2.0, TRAINING_ITERATION: 3, REPORTS: 3, REASON_METRIC: ""}
    searcher.on_trial_complete("stopped", last)
    searcher.on_trial_result("returned", last)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step is reported twice
        searcher.on_trial_complete("returned", last)
    for trial in optuna.load_study(study_name="s", storage=storage).trials:
        assert trial.intermediate_values == {1: 5.0, 2: 3.0, 3: 2.0} and trial.value == 2.0


def _expected_media(rank: int) -> list[tuple[str, str, bytes]]:
    return [(f"rank{rank}-{kind}.wav", "audio/wav", b"RIFF") for kind in ("generated", "true")] + [
        (f"rank{rank}-{kind}.png", "image/png", b"\x89PNG") for kind in ("generated", "true")
    ]


def _attrs(item: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in item["user_attrs"]}


@contextlib.contextmanager
def _dashboard(folder: Path) -> Iterator[Callable[[str], bytes]]:
    """optuna-dashboard on 127.0.0.1 (a free port) for the search in `folder`: yields `get`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [
        str(DASHBOARD),
        f"sqlite:///{folder / 'optuna.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--artifact-dir",
        str(folder / "artifacts"),
    ]

    def get(path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            return answer.read()

    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _answers(get, "/api/meta"):
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "optuna-dashboard did not answer in 60 s"
            time.sleep(0.3)
        yield get
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(get: Callable[[str], bytes], path: str) -> bool:
    try:
        get(path)
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


def _board(trial_id: str) -> Leaderboard:
    entry = Entry(
        rank=1,
        trial_id=trial_id,
        final_score=1.0,
        score_spread=0.0,
        search_score=1.0,
        step=1,
        checkpoint="",
        params={},
    )
    return Leaderboard([entry])
