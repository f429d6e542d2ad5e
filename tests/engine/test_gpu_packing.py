"""Trials packed onto GPUs, proven on a real Ray cluster whose GPUs do not exist.

Ray's scheduler and its per-trial CUDA_VISIBLE_DEVICES do not need the silicon: a node
started with `--num-gpus 2` hands out GPU ids "0" and "1" whatever the machine has. The
cluster is `cluster/local.sh` (through tests/cluster/conftest.py's LocalCluster): a head
with no CPU and one worker node with 4 CPUs and 2 GPUs, its own ports and temp dir.
`ablate run` goes to a subprocess with RAY_ADDRESS, so the session's in-process Ray (0 GPUs)
is never touched. Concurrency is read from the runs table: each run's GPU ids and its
[started_at, finished_at] interval, which a trial's first seed opens before torch is even
imported, so trials that Ray starts together overlap by seconds.

Without CUDA (this machine) every run falls back to the CPU and the progress output says so
once; on a machine with 2 or more CUDA GPUs the same test expects `cuda:0` in every run.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from ablate_testing import load_conftest

from ablate.config import Resources
from ablate.data.source import load_data
from ablate.engine.progress import ProgressPrinter
from ablate.grid import expand_variants, load_grid
from ablate.train.device import (
    VISIBLE_DEVICES_ENV,
    cpu_fallback_note,
    cuda_missing_reason,
    trial_device,
)
from ablate.train.run import execute_run

REPO = Path(__file__).resolve().parents[2]
FAKE_GPUS, CPUS = 2, 4
SWAPS = {"precision": ["bf16"], "channels_last": [True], "norm": ["none"]}
"""With the baseline, four trials; bf16 autocast and channels_last (the CUDA defaults) are
forced on, to show that neither breaks a trial that has a GPU id but no CUDA."""
TRIAL_RESOURCES = (
    "import sys, json, ray\n"
    "from ablate.config import Resources\n"
    "from ablate.engine.driver import trial_resources\n"
    "ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)\n"
    "print(json.dumps(trial_resources(Resources.model_validate_json(sys.argv[2]))))\n"
)
"""What the driver asks Ray for per trial, computed against the fake-GPU cluster."""


def _cluster_helpers():
    """tests/cluster/conftest.py as a plain module: its LocalCluster and _run_ablate."""
    return load_conftest("cluster/conftest.py")


CLUSTER = _cluster_helpers()


class FakeGpuCluster(CLUSTER.LocalCluster):
    """local.sh with one worker node of CPUS CPUs and FAKE_GPUS GPUs (head: none of either).

    PYTHONPATH puts this checkout first for Ray's workers: `ray start` runs whatever Python
    the `ray` on PATH belongs to, which need not have this checkout installed.
    """

    def env(self, **extra: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        return super().env(
            ABLATE_WORKER_CPUS=str(CPUS),
            ABLATE_WORKER_GPUS=str(FAKE_GPUS),
            PYTHONPATH=path,
            **extra,
        )


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[FakeGpuCluster]:
    cluster = FakeGpuCluster(workers=1)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.cleanup()


def most_at_once(runs: pd.DataFrame) -> int:
    """The most runs whose [started_at, finished_at] intervals share one instant."""
    # At equal times an end sorts before a start: touching intervals do not overlap.
    events = sorted(
        [(t, 1) for t in runs["started_at"]] + [(t, -1) for t in runs["finished_at"]],
        key=lambda event: (event[0], event[1]),
    )
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def expected_device(gpu_id: str) -> str:
    """The device type a run on GPU `gpu_id` uses here: cuda if torch has that GPU, else cpu."""
    return "cuda" if int(gpu_id) < torch.cuda.device_count() else "cpu"


@pytest.mark.slow  # a Ray cluster of its own, and 4 fresh trial processes importing torch
@pytest.mark.ray
@pytest.mark.parametrize(
    ("gpu", "swaps", "at_once", "per_gpu"),
    [(0.5, SWAPS, 4, 2), (1, {k: SWAPS[k] for k in ("precision", "channels_last")}, 2, 1)],
    ids=["gpu=0.5", "gpu=1"],
)
def test_trials_pack_onto_gpus_as_the_grid_asks(
    gpu_cluster: FakeGpuCluster,
    grid_writer: Callable[..., Path],
    synthetic_root: Path,
    tmp_path: Path,
    gpu: float,
    swaps: dict[str, list],
    at_once: int,
    per_gpu: int,
) -> None:
    """gpu 0.5: all 4 trials at once, 2 per GPU id; gpu 1: 3 trials, 2 at once, never two
    on one GPU id. Each run saw only its own GPU; without CUDA, one note for the fallback."""
    grid = grid_writer(
        tmp_path,
        synthetic_root,
        **{
            "protocol.seeds": 1,
            "baseline.model.widths": [4, 8],
            "ablations.swap": swaps,
            "resources": {"cpu": 1, "gpu": gpu, "max_failures": 0},
        },
    )
    study = tmp_path / "study"
    env = gpu_cluster.env(RAY_ADDRESS=gpu_cluster.address)

    done = CLUSTER._run_ablate("run", str(grid), "--out", str(study), env=env, cwd=tmp_path)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"{CPUS} CPU, {FAKE_GPUS} GPU; each trial 1 CPU + {gpu:g} GPU" in done.stdout, output
    runs = pd.read_parquet(study / "results" / "runs")
    assert len(runs) == 1 + len(swaps) and (runs["status"] == "ok").all(), runs
    ids = runs["accelerator_ids"]
    assert set(ids) == {"0", "1"}, runs[["variant", "accelerator_ids"]]
    # What torch in the trial could see: its own GPU id, never another trial's.
    visible = runs["cuda_visible_devices"]
    assert (visible == ids).all(), runs[["variant", "accelerator_ids", "cuda_visible_devices"]]
    intervals = ["variant", "accelerator_ids", "started_at", "finished_at"]
    assert most_at_once(runs) == at_once, runs[intervals]
    for _, on_one_gpu in runs.groupby("accelerator_ids"):
        assert most_at_once(on_one_gpu) == per_gpu, runs[intervals]
    devices = [device.split(":")[0] for device in runs["device"]]
    assert devices == [expected_device(i) for i in ids], runs[["accelerator_ids", "device"]]
    notes = [line for line in done.stdout.splitlines() if line.startswith("note: ")]
    if "cpu" in devices:
        assert len(notes) == 1 and notes[0].endswith("they run on the CPU"), done.stdout
    else:
        assert not notes, done.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_null_asks_one_gpu_per_trial_where_the_cluster_has_gpus(
    gpu_cluster: FakeGpuCluster,
) -> None:
    """`gpu: null` becomes the request of `gpu: 1` (tested above) on a cluster with GPUs."""
    asked = {}
    for gpu in (None, 0.25):
        resources = Resources(cpu=2, gpu=gpu).model_dump_json()
        done = gpu_cluster.python(TRIAL_RESOURCES, gpu_cluster.address, resources)
        assert done.returncode == 0, done.stderr[-3000:]
        asked[gpu] = json.loads(done.stdout.strip().splitlines()[-1])
    assert asked == {None: {"cpu": 2, "gpu": 1}, 0.25: {"cpu": 2, "gpu": 0.25}}


def test_a_trial_without_gpus_never_takes_one() -> None:
    """Ray leaves CUDA_VISIBLE_DEVICES unset for a trial with no GPU: it must use the CPU."""
    assert trial_device([]) == "cpu"
    assert trial_device(["0"]) is None  # CUDA when usable, else the CPU
    assert trial_device(None) is None  # outside Ray: automatic
    assert cpu_fallback_note([]) == "" and cpu_fallback_note(None) == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback needs a machine without CUDA")
def test_run_given_a_gpu_id_that_does_not_exist_falls_back_to_cpu(
    grid_writer: Callable[..., Path],
    synthetic_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a trial given Ray's GPU id "1" does on this machine, with the CUDA defaults (bf16
    autocast, channels_last) forced on: it trains on the CPU, and the note says why."""
    monkeypatch.setenv(VISIBLE_DEVICES_ENV, "1")
    grid = load_grid(
        grid_writer(
            tmp_path,
            synthetic_root,
            **{
                "ablations.swap": None,
                "ablations.variants": {"cuda-like": {"precision": "bf16", "channels_last": True}},
            },
        )
    )
    variant = next(v for v in expand_variants(grid) if v.name == "cuda-like")
    config = grid.run_config(variant.recipe)

    result = execute_run(config, load_data(config.data), seed=0, device=trial_device(["1"]))

    assert result.status == "ok", result.error
    assert result.device == "cpu"
    note = cpu_fallback_note(["1"])
    assert note.endswith("they run on the CPU") and cuda_missing_reason() in note


def test_progress_prints_the_fallback_note_once_per_host() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(pending={"a": 2, "b": 1}, finished_before=0, total=3, stream=stream)
    trial = SimpleNamespace(config={})  # Tune's Trial: only its config is read
    notes = ["host1: trials were given GPUs but ...", "host1: trials were given GPUs but ...", ""]
    for (variant, seed), note in zip([("a", 0), ("a", 1), ("b", 0)], notes, strict=True):
        result = {"variant": variant, "seed": seed, "status": "ok", "device_note": note}
        printer.on_trial_result(0, [], trial, result)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[1] == f"note: {notes[0]}", lines
    printer.on_trial_result(0, [], trial, {**result, "device_note": "host2: ..."})
    assert stream.getvalue().splitlines()[-1] == "note: host2: ..."
