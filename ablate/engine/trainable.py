"""The Tune trial: one variant, its seeds in order, each run stored before the next starts.

Everything a trial needs arrives through `tune.with_parameters` (the dataset through the Ray
object store, the configs as JSON), so a worker on another machine needs no dataset copy and
no shared filesystem: it writes straight to the study's storage path or URI.

A retried trial continues where the last attempt stopped: a seed whose runs file exists is
skipped (the runs file is written last, so its presence means every table of that run is
there), and Tune's checkpoint carries the seeds done as a second record.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.config import RunConfig
from ablate.data.ebhi import SegmentationData
from ablate.errors import UserError
from ablate.plugins import load_plugins
from ablate.store import ResultStore, StudyDir
from ablate.store.study import CHECKPOINTS, RUN_OUTPUTS, TENSORBOARD
from ablate.train.device import cpu_fallback_note, trial_device
from ablate.train.metrics import macro
from ablate.train.run import RunOutputs, RunResult, execute_run

PROGRESS_FILE = "progress.json"
RESULT_TABLES = ("image_metrics", "class_metrics", "history")
"""Written before `runs`, which is written last and marks the run complete."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares, shipped once through the object store.

    Attributes:
        study: study name (the `study` column).
        study_uri: study directory, local path or URI.
        run_configs: variant name -> RunConfig JSON.
        seeds: the study's seeds, in the order they run.
        cpus: CPUs of one trial, passed to the training run (threads, loader workers).
        lock: content of the study.lock file of the command that started these trials; None
            outside `ablate run`. A trial checks it before it deletes or writes a run.
        round: the adaptive round these trials run (the runs table's `round`); 0 for a
            fixed number of seeds, which is one round.
        variant_seeds: variant -> the seeds its trial runs in this round; a variant not
            listed runs every seed of `seeds`.
    """

    study: str
    study_uri: str
    run_configs: dict[str, str]
    seeds: list[int]
    cpus: int = 1
    versions: dict[str, str] = field(default_factory=dict)
    lock: str | None = None
    round: int = 0
    variant_seeds: dict[str, list[int]] = field(default_factory=dict)


class StudyTakenOver(RuntimeError):
    """The command that started this trial is gone and another one holds the study."""


def check_still_owned(study: StudyDir, setup: TrialSetup) -> None:
    """Stop a trial whose command no longer holds the study lock.

    Ray ends the workers of a stopped command asynchronously (on a busy node, seconds later):
    such a worker must not delete or overwrite a run that the next `ablate run` is producing.

    Raises:
        StudyTakenOver: the lock file is gone or belongs to another command.
    """
    if setup.lock is None:
        return
    if study.read_lock() != setup.lock:
        raise StudyTakenOver(
            f"study directory {study.uri} is no longer held by the command that "
            "started this trial: it stops without touching the study"
        )


def macro_dice(class_metrics: pd.DataFrame | None) -> float:
    """Mean Dice over the categories (or classes) of one run; NaN when it has none."""
    if class_metrics is None or class_metrics.empty or "dice" not in class_metrics:
        return float("nan")
    return macro(class_metrics, "dice")


def _node_id() -> str:
    """The Ray node running this run; empty outside Ray (a direct call)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _gpu_ids() -> list[str] | None:
    """The GPU ids Ray gave this trial ([] for none); None outside Ray (a direct call)."""
    import ray

    if not ray.is_initialized():
        return None
    return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def runs_row(
    config: RunConfig, result: RunResult, started: pd.Timestamp, setup: TrialSetup
) -> pd.DataFrame:
    """The one-row runs table of a finished run (see docs/ARCHITECTURE.md "Study directory")."""
    row = {
        "status": result.status,
        "error": result.error,
        "epochs": int(result.epochs),
        "best_epoch": pd.array([result.best_epoch], dtype="Int64"),
        "duration_s": float(result.duration_s),
        "test_loss": float("nan") if result.test_loss is None else float(result.test_loss),
        "node": _node_id(),
        "hostname": socket.gethostname(),
        "device": str(result.device),
        "accelerator_ids": ",".join(_gpu_ids() or []),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "torch_version": setup.versions.get("torch", ""),
        "ray_version": setup.versions.get("ray", ""),
        "config": config.model_dump_json(),
        "early_stopping_split": result.early_stopping_split,
        "round": int(setup.round),
        "started_at": started,
        "finished_at": pd.Timestamp.now(tz="UTC"),
    }
    frame = pd.DataFrame(
        {key: value if key == "best_epoch" else [value] for key, value in row.items()}
    )
    return frame.astype({"error": "string", "status": "string", "cuda_visible_devices": "string"})


def _train_with_outputs(
    study: StudyDir, config: RunConfig, data: SegmentationData, variant: str, seed: int, cpus: int
) -> RunResult:
    """execute_run with checkpoints and TensorBoard events under the study directory.

    A local study is written in place; for a remote one (s3://...) the run writes to a
    node-local scratch folder that is uploaded when the run ends.
    """
    parts = {name: study.run_folder(name, variant, seed) for name in RUN_OUTPUTS}
    with tempfile.TemporaryDirectory(prefix="ablate-run-") as scratch:
        local = {
            name: Path(study.path(*part)) if study.location.local else Path(scratch, name)
            for name, part in parts.items()
        }
        for name, folder in local.items():
            if study.location.local:  # in the study: no link may take it elsewhere
                study.location.makedirs(*parts[name])
            folder.mkdir(parents=True, exist_ok=True)
        outputs = RunOutputs(checkpoint_dir=local[CHECKPOINTS], tensorboard_dir=local[TENSORBOARD])
        device = trial_device(_gpu_ids())
        result = execute_run(config, data, seed, outputs=outputs, cpus=cpus, device=device)
        for name, part in parts.items():
            study.location.put_dir(local[name], *part)
    return result


def run_seed(
    study: StudyDir, setup: TrialSetup, data: SegmentationData, variant: str, seed: int
) -> tuple[str, float]:
    """Train and evaluate one (variant, seed) and store its tables; returns (status, macro Dice)."""
    config = RunConfig.model_validate_json(setup.run_configs[variant])
    store = study.results(setup.study)
    check_still_owned(study, setup)
    # Leftovers of an attempt that died before its runs file must not mix with this one.
    store.delete_run(variant, seed)
    started = pd.Timestamp.now(tz="UTC")
    result = _train_with_outputs(study, config, data, variant, seed, setup.cpus)
    check_still_owned(study, setup)
    for table in RESULT_TABLES:
        frame = getattr(result, table)
        # An empty frame (failed run) would give its file a schema without the metric columns.
        if frame is not None and not frame.empty:
            store.write(table, variant, seed, frame)
    store.write("runs", variant, seed, runs_row(config, result, started, setup))
    return result.status, macro_dice(result.class_metrics)


def _stored_dice(store: ResultStore, variant: str, seed: int) -> float:
    """A finished seed's macro Dice for the progress line; NaN when its file is damaged
    (the summary names that file; a progress line is no reason to fail a trial)."""
    try:
        return macro_dice(store.read_run("class_metrics", variant, seed))
    except UserError:
        return float("nan")


def _report(
    variant: str, seed: int, status: str, dices: dict[int, float], total: int, seconds: float
) -> None:
    from ray import tune

    done = sorted(dices)
    finite = [d for d in dices.values() if np.isfinite(d)]
    metrics = {
        "variant": variant,
        "seed": seed,
        "status": status,
        "macro_dice": dices[seed],
        "mean_macro_dice": float(np.mean(finite)) if finite else float("nan"),
        "seeds_done": len(done),
        "seeds_total": total,
        "seed_seconds": seconds,
        "device_note": cpu_fallback_note(_gpu_ids()),
    }
    with tempfile.TemporaryDirectory(prefix="ablate-ckpt-") as folder:
        Path(folder, PROGRESS_FILE).write_text(json.dumps({"variant": variant, "seeds_done": done}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def train_variant(config: dict, *, data: SegmentationData, setup: TrialSetup) -> None:
    """Tune function trainable: run the unfinished seeds of `config["variant"]` in order
    (its `setup.variant_seeds` in an adaptive round, else every seed of the study).

    The store decides what is finished (a runs file exists); the Tune checkpoint reported
    after each seed records the same seeds for Tune's own bookkeeping.
    """
    load_plugins()  # a worker process: the plug-ins the study's configs name (installed here)
    variant = config["variant"]
    study = StudyDir.open(setup.study_uri)
    store = study.results(setup.study)
    finished = {seed for v, seed in store.completed() if v == variant and seed in setup.seeds}
    dices = {seed: _stored_dice(store, variant, seed) for seed in finished}
    for seed in setup.variant_seeds.get(variant, setup.seeds):
        if seed in finished:
            continue
        began = time.monotonic()
        status, dices[seed] = run_seed(study, setup, data, variant, seed)
        _report(variant, seed, status, dices, len(setup.seeds), time.monotonic() - began)
