"""Fixtures of the cluster tests: a real multi-node Ray cluster (cluster/local.sh), tiny grids.

These tests never touch the session's in-process Ray (`ray_session`): every `ablate run`
goes to a subprocess, and the cluster gets its own state folder, temp dir and ports, so it
runs beside a local `ray.init()` without sharing anything with it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL_SH = REPO / "cluster" / "local.sh"
# Per node local.sh uses ports P+10+10i .. P+15+10i and P+1000+200i .. +199 (see the script).
PORTS_PER_CLUSTER = 2000
TABLE_KEYS = {
    "runs": [],
    "class_metrics": ["category"],
    "image_metrics": ["image", "class_name"],
    "history": ["epoch"],
}
"""Each results table and the columns that, with (variant, seed), identify one row."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_port_base(workers: int) -> int:
    """A GCS port whose derived ports (local.sh's scheme) are free now.

    Random below the kernel's ephemeral range (32768+), so two test sessions rarely pick the
    same block and outgoing connections do not take our ports.
    """
    for _ in range(50):
        base = random.randrange(20000, 32768 - PORTS_PER_CLUSTER, 10)
        node_ports = [base + 10 + 10 * i + k for i in range(workers + 1) for k in range(6)]
        worker_ports = [base + 1000 + 200 * i for i in range(workers + 1)]
        if all(_port_free(port) for port in [base, base + 2, *node_ports, *worker_ports]):
            return base
    raise RuntimeError("no free port block for a local Ray cluster")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, zombies excluded (they have exited)."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,stat="], capture_output=True, text=True, check=True
    )
    table = {}
    for line in out.stdout.splitlines():
        pid, ppid, stat = line.split()
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), stat)
    return table


class LocalCluster:
    """Drives cluster/local.sh with a private state folder and port block."""

    def __init__(self, workers: int) -> None:
        # Short path: Ray's unix sockets live below it and must stay under 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="abl-", dir="/tmp"))
        self.port = free_port_base(workers)
        self.workers = workers
        self.address = f"127.0.0.1:{self.port}"
        self.started = False

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # Token auth as local.sh sets it: drivers must ask for it (Ray 2.60, see local.sh).
        env.update(
            ABLATE_CLUSTER_DIR=str(self.dir),
            ABLATE_CLUSTER_PORT=str(self.port),
            RAY_AUTH_MODE="token",
            **extra,
        )
        return env

    def script(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(LOCAL_SH), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self) -> subprocess.CompletedProcess:
        self.started = True
        result = self.script("up", str(self.workers))
        assert result.returncode == 0, f"local.sh up failed:\n{result.stdout}\n{result.stderr}"
        return result

    def kill(self, worker: int) -> None:
        result = self.script("kill", str(worker))
        assert result.returncode == 0, result.stderr

    def python(self, code: str, *args: str) -> subprocess.CompletedProcess:
        """`python -c CODE ARGS` with the cluster's environment, in a subprocess (keeps this
        process's Ray, if any, untouched)."""
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def worker_indices(self) -> dict[str, int]:
        """Ray node id -> worker index (1..N, as `kill` takes it) of every worker node.

        Read from the GCS in a subprocess (this process lacks the cluster's token mode);
        local.sh gives node i the node manager port P+10+10i.
        """
        probe = (
            "import sys; from ray._raylet import GcsClient; "
            "nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10); "
            "[print(k.hex(), i.node_manager_port) for k, i in nodes.items() if i.state == 0]"
        )
        result = self.python(probe, self.address)
        assert result.returncode == 0, result.stderr
        indices = {}
        for line in result.stdout.splitlines():
            node_id, port = line.split()
            indices[node_id] = (int(port) - self.port - 10) // 10
        return {node_id: i for node_id, i in indices.items() if i > 0}  # 0 is the head

    def down(self) -> subprocess.CompletedProcess:
        self.started = False
        return self.script("down")

    def node_pids(self) -> list[int]:
        return [int(p.read_text()) for p in (self.dir / "nodes").glob("*.pid")]

    def processes(self) -> set[int]:
        """Live processes of this cluster: the trees below its nodes' `ray start` processes
        and anything that names its temp dir (found independently of local.sh's own logic)."""
        table = _process_table()
        keep = set(self.node_pids()) & set(table)
        grew = True
        while grew:
            children = {pid for pid, (ppid, _) in table.items() if ppid in keep} - keep
            keep |= children
            grew = bool(children)
        named = subprocess.run(["pgrep", "-f", f"{self.dir}/"], capture_output=True, text=True)
        keep |= {int(pid) for pid in named.stdout.split()}
        return keep

    def assert_down_leaves_nothing(self) -> None:
        """`down` exits 0 and no process of this cluster is left, whoever started it."""
        processes = self.processes()
        assert processes, "the cluster has no process before down"
        result = self.down()
        assert result.returncode == 0, f"local.sh down failed:\n{result.stdout}\n{result.stderr}"
        assert not alive(processes), f"Ray processes left after down: {sorted(alive(processes))}"
        assert not self.processes(), "a process still names the cluster's temp dir"

    def cleanup(self) -> None:
        if self.started:
            self.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def alive(pids: set[int]) -> set[int]:
    """The pids of `pids` still running (zombies count as gone)."""
    return pids & set(_process_table())


@pytest.fixture
def cluster_factory() -> Iterator:
    """Make LocalCluster(workers); every cluster made is brought down at the end."""
    made: list[LocalCluster] = []

    def make(workers: int) -> LocalCluster:
        made.append(LocalCluster(workers))
        return made[-1]

    yield make
    for cluster in made:
        cluster.cleanup()


def _write_grid(path: Path, study: str, seeds: int, epochs: int = 1) -> Path:
    """A two-variant study (baseline, no-skips) on tiny synthetic data: seconds per run."""
    path.write_text(
        f"""\
study: {study}
data:
  synthetic: {{per_class: 6, size: 64, seed: 0}}
protocol:
  seeds: {seeds}
  test_fraction: 0.2
  val_fraction: 0.1
baseline:
  model: {{widths: [8, 16, 32]}}
  train: {{image_size: 32, epochs: {epochs}, batch_size: 8, patience: {max(3, epochs)}}}
  augment: {{copies: 1}}
ablations:
  remove: [skips]
resources: {{cpu: 1, gpu: 0}}
"""
    )
    return path


def _run_ablate(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 400
) -> subprocess.CompletedProcess:
    """`ablate ARGS` in a subprocess (keeps this process's Ray, if any, untouched)."""
    return subprocess.run(
        [sys.executable, "-m", "ablate.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_each_run_once(tables: dict[str, pd.DataFrame], expected: set[tuple[str, int]]) -> None:
    """Every (variant, seed) in every table, each row once (no run written twice)."""
    for name, frame in tables.items():
        assert not frame.empty, f"table {name} is empty"
        frame = frame.assign(seed=frame["seed"].astype(int))
        runs = set(zip(frame["variant"], frame["seed"], strict=True))
        assert runs == expected, f"table {name}: runs {sorted(runs)} != {sorted(expected)}"
        keys = ["variant", "seed", *TABLE_KEYS[name]]
        duplicated = frame[frame.duplicated(keys, keep=False)]
        assert duplicated.empty, f"table {name}: rows written twice:\n{duplicated[keys]}"


@pytest.fixture(scope="session")
def write_grid():
    return _write_grid


@pytest.fixture(scope="session")
def run_ablate():
    return _run_ablate


@pytest.fixture(scope="session")
def assert_each_run_once():
    return _assert_each_run_once
