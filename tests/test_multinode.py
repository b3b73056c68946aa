"""Searches against a real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`:
a head that runs nothing and worker nodes with logical GPUs, all on loopback, token
authentication on): trials spread over nodes, a lost node costs at most one report interval,
a killed driver is resumed, and a driver without the cluster's token is refused."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from samplegan_tune.tuning.experiment import Experiment
from samplegan_tune.tuning.space import resolve_space

pytestmark = pytest.mark.slow
WORKER = {"num_cpus": 2, "num_gpus": 1, "node_ip_address": "127.0.0.1"}


class LocalCluster:
    """A head with no CPUs plus worker nodes; `env` is what a driver needs to join it."""

    def __init__(self, folder: Path) -> None:
        from ray.cluster_utils import Cluster

        self.token = folder / "auth_token"
        self.token.write_text("samplegan-test-" + os.urandom(16).hex())
        self.ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # socket paths stay short
        os.mkdir(self.ray_tmp + "/ray")  # Ray's folder under $RAY_TMPDIR
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token),
            "RAY_TMPDIR": self.ray_tmp,
            "SAMPLEGAN_CACHE": str(folder / "cache"),
            # Ray turns a loopback address into the machine's IP; the nodes listen on loopback.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        with self._node_env():
            self.cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 0,
                    "node_ip_address": "127.0.0.1",
                    "temp_dir": self.ray_tmp + "/ray",
                    "include_dashboard": False,
                },
            )
            self.workers = [self.cluster.add_node(**WORKER) for _ in range(2)]

    @contextlib.contextmanager
    def _node_env(self) -> Iterator[None]:
        """Nodes start from this process: give it the cluster's environment meanwhile."""
        from ray._raylet import Config

        saved = dict(os.environ)
        os.environ.update(self.env)
        Config.initialize("")  # Ray reads RAY_AUTH_MODE into its config (as ray.init does)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            Config.initialize("")

    @property
    def address(self) -> str:
        return self.cluster.address

    def replace_worker(self, node_id: str) -> None:
        """Kill the worker node `node_id` (all its processes) and start a fresh one."""
        lost = next(w for w in self.workers if w.node_id == node_id)
        self.cluster.remove_node(lost, allow_graceful=False)
        self.workers.remove(lost)
        with self._node_env():
            self.workers.append(self.cluster.add_node(**WORKER))

    def shutdown(self) -> None:
        with self._node_env():
            self.cluster.shutdown()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    yield local
    local.shutdown()


def search_args(storage: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "samplegan_tune.cli",
        "search",
        "--storage",
        str(storage),
        "--name",
        name,
        *extra,
    ]


def results(exp: Path) -> dict[str, list[dict]]:
    """Every trial's reported results so far, in order, by trial id."""
    found = {}
    for path in exp.glob("trial_*/result.json"):
        lines = path.read_text().splitlines()
        found[path.parent.name.removeprefix("trial_")] = [json.loads(x) for x in lines if x]
    return found


def long_smoke_space(folder: Path) -> Path:
    """The smoke space with six report intervals that ASHA never cuts short."""
    space = yaml.safe_load(resolve_space("smoke").read_text())
    space["settings"].update(max_reports=6, grace_period=6, num_samples=4)
    path = folder / "long-smoke.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))  # params keep their order
    return path


def test_search_spreads_fractional_gpu_trials_over_nodes(cluster, tmp_path: Path) -> None:
    args = search_args(
        tmp_path,
        "spread",
        "--space",
        "smoke",
        "--address",
        cluster.address,
        "--gpus-per-trial",
        "0.5",
        "--max-concurrent",
        "4",
    )
    done = subprocess.run(args, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[search] 4/4 done" in done.stdout
    by_trial = results(tmp_path / "spread")
    assert len(by_trial) == 4
    nodes = {r["node"] for rows in by_trial.values() for r in rows}
    assert len(nodes) >= 2, "trials must run on more than one worker node"
    assert nodes <= {w.node_id for w in cluster.workers}, "the head must run no trial"
    assert (tmp_path / "spread" / "leaderboard.json").is_file()


def test_lost_node_costs_at_most_one_report_interval(cluster, tmp_path: Path) -> None:
    exp = tmp_path / "loss"
    args = search_args(
        tmp_path,
        "loss",
        "--space",
        str(long_smoke_space(tmp_path)),
        "--address",
        cluster.address,
        "--gpus-per-trial",
        "0.5",
    )
    driver = subprocess.Popen(
        args, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    victim = _wait_for_checkpointed_trial(exp, timeout=300)
    cluster.replace_worker(victim["node"])  # fault injection: the node dies mid-search
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-4000:]

    from ray import tune

    trials = tune.ExperimentAnalysis(str(exp)).trials
    assert len(trials) == 4 and all(t.status == "TERMINATED" for t in trials), output[-4000:]
    assert sum(t.num_failures for t in trials) >= 1, "the lost node must have failed a trial"
    by_trial = results(exp)
    resumed = by_trial[victim["trial_id"]]
    assert any(r["node"] != victim["node"] for r in resumed), "resumed on another node"
    restarts = [r for r in resumed if r["iterations_since_restore"] == 1]
    assert restarts[-1]["training_iteration"] > 1, "resumed from its checkpoint, not from 0"
    for trial_id, rows in by_trial.items():
        reports = [r["reports"] for r in rows]
        # each interval is reported once: at most the one in flight was lost and redone
        assert reports == list(range(1, len(rows) + 1)), (trial_id, reports)
        steps = [r["step"] for r in rows]
        assert steps == sorted(set(steps)), (trial_id, steps)
    study = Experiment.load(exp).study()
    outcomes = [t.user_attrs.get("outcome") for t in study.trials]
    assert len(outcomes) == 4 and "error" not in outcomes and "lost" not in outcomes


def _wait_for_checkpointed_trial(exp: Path, timeout: float) -> dict:
    """The last result of a running trial that has a checkpoint and intervals left to run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rows in results(exp).values():
            last = rows[-1] if rows else {}
            if 1 <= last.get("reports", 0) <= 3 and last.get("node"):
                return last
        time.sleep(0.2)
    raise AssertionError(f"no trial reported within {timeout} s")


def test_killed_driver_resumes_on_the_cluster(cluster, tmp_path: Path) -> None:
    exp = tmp_path / "cut"
    args = search_args(
        tmp_path, "cut", "--space", "smoke", "--address", cluster.address, "--max-concurrent", "2"
    )
    driver = subprocess.Popen(
        args,
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(exp.glob("trial_*/checkpoint_*"))) < 2:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    assert not (exp / "leaderboard.json").exists(), "the search must have been cut short"

    resume = [sys.executable, "-m", "samplegan_tune.cli", "resume", str(exp)]  # address saved
    done = subprocess.run(resume, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from ray import tune

    trials = tune.ExperimentAnalysis(str(exp)).trials
    assert len(trials) == 4 and all(t.status == "TERMINATED" for t in trials)
    study = Experiment.load(exp).study()
    told = [t for t in study.trials if t.user_attrs.get("outcome") != "lost"]
    assert len(told) == 4
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    assert (exp / "leaderboard.json").is_file()


def test_driver_without_the_token_is_refused(cluster, tmp_path: Path) -> None:
    wrong = tmp_path / "other_token"
    wrong.write_text("not-the-cluster-token-" + os.urandom(8).hex())
    env = {**cluster.env, "RAY_AUTH_TOKEN_PATH": str(wrong)}
    args = search_args(tmp_path, "intruder", "--space", "smoke", "--address", cluster.address)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "token" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "intruder").exists()
