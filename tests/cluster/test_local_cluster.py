"""A study on a real multi-node Ray cluster (cluster/local.sh): spread, node loss, clean-up.

Each test starts its own cluster: a head with 0 CPUs (so every trial runs on a worker node)
and worker nodes of 1 CPU, each its own raylet with its own node id, all on this machine.
`ablate run` goes to a subprocess with `--address`, so an in-process Ray is never touched.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

VARIANTS = ("baseline", "no-skips")
TABLES = ("runs", "class_metrics", "image_metrics", "history")


def read_tables(study: Path) -> dict[str, pd.DataFrame]:
    # pandas over the whole folder, as users read a study: a stray or duplicate file shows.
    return {name: pd.read_parquet(study / "results" / name) for name in TABLES}


def test_study_spreads_over_worker_nodes(
    cluster_factory, write_grid, run_ablate, assert_each_run_once, tmp_path: Path
) -> None:
    """Head with 0 CPUs, 2 workers: trials ran on both worker nodes and every run is ok.

    The driver joins through RAY_ADDRESS, as `local.sh up` tells users to export it (the
    node-loss test below uses --address).
    """
    cluster = cluster_factory(workers=2)
    up = cluster.up()
    assert f"export RAY_ADDRESS={cluster.address}" in up.stdout
    grid = write_grid(tmp_path / "grid.yaml", "cluster-spread", seeds=2)
    study = tmp_path / "study"

    result = run_ablate(
        "run",
        str(grid),
        "--out",
        str(study),
        env=cluster.env(RAY_ADDRESS=cluster.address),
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 node(s), 2 CPU" in result.stdout  # head (0 CPUs) + 2 workers of 1 CPU: joined
    runs = pd.read_parquet(study / "results" / "runs")
    assert sorted(runs["status"]) == ["ok"] * 4
    assert runs["node"].nunique() == 2, runs[["variant", "seed", "node"]]
    assert_each_run_once(read_tables(study), {(v, s) for v in VARIANTS for s in (0, 1)})
    cluster.assert_down_leaves_nothing()


def _wait_for_first_run(study: Path, driver: subprocess.Popen, timeout: float) -> str:
    """The node id of the first run stored (files appear whole: temp name + rename)."""
    deadline = time.monotonic() + timeout
    runs = study / "results" / "runs"
    while time.monotonic() < deadline:
        stored = sorted(runs.glob("*.parquet")) if runs.is_dir() else []
        if stored:
            return str(pd.read_parquet(stored[0])["node"].iloc[0])
        assert driver.poll() is None, f"ablate run exited early:\n{driver.communicate()[0]}"
        time.sleep(0.2)
    raise AssertionError(f"no run finished within {timeout}s")


def test_study_survives_losing_a_worker_node(
    cluster_factory, write_grid, assert_each_run_once, tmp_path: Path
) -> None:
    """A worker node killed mid-study: the study completes, each run stored exactly once."""
    cluster = cluster_factory(workers=2)
    cluster.up()
    workers = cluster.worker_indices()
    assert len(workers) == 2, workers
    grid = write_grid(tmp_path / "grid.yaml", "cluster-node-loss", seeds=3, epochs=64)
    study = tmp_path / "study"
    command = [
        sys.executable,
        "-m",
        "ablate.cli",
        "run",
        str(grid),
        "--address",
        cluster.address,
        "--out",
        str(study),
    ]
    with subprocess.Popen(
        command,
        env=cluster.env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as driver:
        # One trial per 1-CPU node. We kill the node that stored the first run: it has
        # worked (its run stays stored) and its trial still has seeds to go (64 epochs make
        # a run last about 2 s), which must move to the survivor. The other node may not
        # have stored anything yet.
        first_node = _wait_for_first_run(study, driver, timeout=180)
        cluster.kill(workers[first_node])
        # Taken once the node is dead: a run that started earlier may be on either node.
        killed_at = pd.Timestamp.now(tz="UTC")
        output, _ = driver.communicate(timeout=400)

    assert driver.returncode == 0, output
    runs = pd.read_parquet(study / "results" / "runs")
    assert sorted(runs["status"]) == ["ok"] * 6, runs[["variant", "seed", "status", "error"]]
    assert_each_run_once(read_tables(study), {(v, s) for v in VARIANTS for s in (0, 1, 2)})
    # The killed node stored its first run; every run started after the kill ran on the
    # survivor, and the killed node's unfinished seeds were among them.
    assert (runs["node"] == first_node).any(), runs[["variant", "seed", "node"]]
    after = runs[pd.to_datetime(runs["started_at"], utc=True) > killed_at]
    assert not after.empty, runs[["variant", "seed", "node", "started_at"]]
    assert set(after["node"]) == set(workers) - {first_node}, after[["variant", "seed", "node"]]
    cluster.assert_down_leaves_nothing()


def test_down_leaves_no_ray_process(cluster_factory) -> None:
    """Worker processes (which leave their node's process group) are stopped by down too."""
    cluster = cluster_factory(workers=1)
    cluster.up()
    # A task makes the worker node start a worker process, which stays as ray::IDLE.
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(ray.get(ray.remote(lambda: ray.get_runtime_context().get_node_id()).remote()))"
    )
    result = cluster.python(probe, cluster.address)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()[-1]) == 56  # a node id, 28 bytes in hex
    cluster.assert_down_leaves_nothing()
    again = cluster.script("down")
    assert again.returncode == 0, again.stderr  # down is idempotent
