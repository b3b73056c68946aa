"""A real `ray up` of cluster/onprem.yaml, pointed at this machine over SSH.

Everything runs inside a private network namespace that has only a loopback interface (Ray's
processes listen on all interfaces when a node's IP is not 127.0.0.1): an OpenSSH server on
127.0.0.2 and 127.0.0.3, a head node (no CPUs) on 127.0.0.2, and a worker node with a logical
GPU on 127.0.0.3 that the head's autoscaler starts over SSH. A smoke search is submitted with
`ray exec`, then `ray down`. Needs root, openssh-server, rsync and iproute2 (.ci/run installs
them)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.installed import fresh_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
HEAD, WORKER = "127.0.0.2", "127.0.0.3"
TOOLS = ["unshare", "nsenter", "ip", "ssh", "ssh-keygen", "rsync"]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
BOOTSTRAP_FILES = {Path.home() / "ray_bootstrap_config.yaml", Path.home() / "ray_bootstrap_key.pem"}


def _missing() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return missing + ([] if os.path.exists(SSHD) else ["sshd"])


class Namespace:
    """A network namespace with only loopback; `run` executes a command inside it."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == ours:
            assert time.monotonic() < deadline, "unshare --net did not take effect"
            time.sleep(0.05)
        self.run("ip", "link", "set", "lo", "up", check=True)

    def command(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *args]

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
        try:
            return subprocess.run(self.command(*args), capture_output=True, text=True, **kwargs)
        except subprocess.TimeoutExpired as err:
            tail = (err.stdout or b"")[-3000:].decode() + (err.stderr or b"")[-3000:].decode()
            raise AssertionError(f"{' '.join(args[:3])} timed out:\n{tail}") from None

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0 or _missing():
        pytest.skip(f"needs root and {', '.join(_missing()) or 'root'} (.ci/run installs them)")
    space = Namespace()
    yield space
    space.close()


@pytest.fixture
def sshd(namespace: Namespace, tmp_path: Path) -> Iterator[Path]:
    """An OpenSSH server on the head's and the worker's addresses; yields the client key."""
    key, host_key = tmp_path / "id_ed25519", tmp_path / "host_ed25519"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    shutil.copy(f"{key}.pub", tmp_path / "authorized_keys")
    config = tmp_path / "sshd_config"
    config.write_text(f"""Port 22
ListenAddress {HEAD}
ListenAddress {WORKER}
HostKey {host_key}
AuthorizedKeysFile {tmp_path / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
""")
    os.makedirs("/run/sshd", exist_ok=True)  # OpenSSH's privilege-separation folder
    server = subprocess.Popen(
        namespace.command(SSHD, "-D", "-e", "-f", str(config)), stderr=subprocess.DEVNULL
    )
    login = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
    ]
    deadline = time.monotonic() + 30
    while namespace.run(*login, f"{getpass.getuser()}@{WORKER}", "true").returncode != 0:
        assert time.monotonic() < deadline, "sshd did not accept the key on loopback"
        time.sleep(0.3)
    yield key
    server.kill()
    server.wait()


def node_setup(config: dict, bin_dir: Path) -> list[str]:
    """The YAML's own setup commands, with the project's repository URL rewritten to this
    checkout (its committed `main`, or HEAD) and `pip` to the nodes' fresh environment."""
    ref = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    project = "git+https://github.com/YOUR-ORG/samplegan-tune@${SAMPLEGAN_REF:-main}"
    assert any(project in c for c in config["setup_commands"]), "the YAML installs the project"
    commands = []
    for command in config["setup_commands"]:
        if "pip install" not in command:
            continue  # the storage line: the test passes --storage itself
        command = command.replace(
            "https://github.com/YOUR-ORG/samplegan-tune", f"file://localhost{ROOT}"
        )
        commands.append(f"SAMPLEGAN_REF={ref} {command.replace('pip ', f'{bin_dir}/pip ', 1)}")
    return commands


def loopback_config(tmp_path: Path, key: Path, ray_tmp: str, bin_dir: Path) -> Path:
    """cluster/onprem.yaml with this machine's loopback addresses for head and worker.

    Changed from the shipped file, and why: addresses, SSH user and key; the token goes to a
    test path (not over this machine's ~/.ray/auth_token); the project is installed by the
    YAML's own pip command from this checkout into a fresh environment (`node_setup`); `ray
    stop` lines dropped (they would stop every Ray on this machine); `ray` and
    `samplegan-tune` by absolute path, with Ray's temp folder set.
    """
    config = yaml.safe_load((ROOT / "cluster" / "onprem.yaml").read_text())
    token = tmp_path / "token"
    token.write_text("samplegan-ray-up-" + os.urandom(16).hex())
    node_token = tmp_path / "node" / "auth_token"
    ray_env = f"RAY_AUTH_TOKEN_PATH={node_token} RAY_TMPDIR={ray_tmp}"

    def starts(key: str, extra: str) -> list[str]:
        commands = [c for c in config[key] if "ray start" in c]
        return [c.replace("ray start", f"{ray_env} {bin_dir}/ray start") + extra for c in commands]

    config.update(
        cluster_name=f"samplegan-test-{os.getpid()}",
        provider={"type": "local", "head_ip": HEAD, "worker_ips": [WORKER]},
        auth={"ssh_user": getpass.getuser(), "ssh_private_key": str(key)},
        min_workers=1,
        max_workers=1,
        file_mounts={str(node_token): str(token)},
        setup_commands=[*node_setup(config, bin_dir), f"{bin_dir}/samplegan-tune spaces"],
        head_start_ray_commands=starts(
            "head_start_ray_commands", f" --node-ip-address={HEAD} --include-dashboard=false"
        ),
        worker_start_ray_commands=starts(
            "worker_start_ray_commands", f" --num-cpus=2 --num-gpus=1 --node-ip-address={WORKER}"
        ),
    )
    path = tmp_path / "onprem-loopback.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_ray_up_onprem_runs_a_search_on_the_worker(namespace, sshd, tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="rayup", dir="/tmp")  # the nodes'; socket paths short
    # The launcher keeps its own state, as on a laptop: the head's autoscaler has its own.
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "launcher")}
    bin_dir = fresh_env(tmp_path / "node-env")  # what the nodes run: installed by setup
    cluster = loopback_config(tmp_path, sshd, ray_tmp, bin_dir)
    bootstrap_before = {path for path in BOOTSTRAP_FILES if path.exists()}
    try:
        up = namespace.run(str(bin_dir / "ray"), "up", "-y", str(cluster), env=env, timeout=300)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        node_token = tmp_path / "node" / "auth_token"
        search = (
            f"cd {tmp_path} && RAY_AUTH_TOKEN_PATH={node_token} RAY_TMPDIR={ray_tmp} "
            f"SAMPLEGAN_CACHE={tmp_path / 'cache'} {bin_dir}/samplegan-tune search --space smoke "
            f"--address auto --gpus-per-trial 0.5 --storage {tmp_path / 'results'} --name up"
        )
        done = namespace.run(
            str(bin_dir / "ray"), "exec", str(cluster), search, env=env, timeout=600
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
        assert "[search] 4/4 done" in done.stdout
        down = namespace.run(str(bin_dir / "ray"), "down", "-y", str(cluster), env=env, timeout=120)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    finally:
        _stop_ray_started_under(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        for path in BOOTSTRAP_FILES - bootstrap_before:  # `ray up` copied them to the head
            path.unlink(missing_ok=True)
    exp = tmp_path / "results" / "up"
    trials = list(exp.glob("trial_*/result.json"))
    assert len(trials) == 4 and (exp / "leaderboard.json").is_file()
    ips = {json.loads(line)["node_ip"] for t in trials for line in t.read_text().splitlines()}
    assert ips == {WORKER}, "trials run on the worker the autoscaler started, never the head"


def _stop_ray_started_under(ray_tmp: str) -> None:
    """Kill the Ray processes of this test's cluster (their command lines name its folder).

    `ray down` runs `ray stop` on each node over SSH, which finds no `ray` on a login PATH
    here (the project lives in a virtual environment), so the test cleans up itself.
    """
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if ray_tmp.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass  # it ended meanwhile
