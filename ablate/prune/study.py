"""Pruning sensitivity of a whole study: every completed run, as Ray tasks when Ray is up.

The driver reads the runs table, loads each dataset once and ships it through the object
store (`ray.put`), so workers need neither a dataset copy nor the driver's filesystem
beyond the study location. Runs whose tables all exist and hold every requested pruning step
are skipped (resume); new steps are added to a run's stored rows.
"""

from __future__ import annotations

import sys

from ablate.config import PruningConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.source import load_data
from ablate.prune.analysis import (
    PRUNE_TABLES,
    PRUNING,
    STEP_COLUMNS,
    RunSpec,
    Step,
    analyse_run,
    requested_steps,
)
from ablate.store import ResultStore, StudyDir

TASK_CPUS = 1
TASK_GPU_SHARE = 0.25
"""GPU share of one task where the cluster has GPUs: evaluation of a small U-Net leaves
most of a card idle, so four runs share one."""


def pending_runs(study: StudyDir, config: PruningConfig) -> list[RunSpec]:
    """The completed runs that still miss a pruning table or a requested pruning step.

    A run whose pruning table lacks some (method, scope, amount) of `config` is pending for
    those steps only: asking for a new method, scope or amount adds its rows to the study.
    """
    store = study.results()
    done = {table: set(store.run_files(table)) for table in PRUNE_TABLES}
    wanted = requested_steps(config)
    specs = []
    for row in store.ok_runs(config.variants).itertuples(index=False):
        key = (row.variant, int(row.seed))
        stored = _stored_steps(store, *key) if key in done[PRUNING] else frozenset()
        missing = tuple(
            table
            for table in PRUNE_TABLES
            if key not in done[table] or (table == PRUNING and not wanted <= stored)
        )
        if missing:
            spec = RunSpec(study.uri, str(row.study), *key, row.config, missing, stored)
            specs.append(spec)
    return specs


def _stored_steps(store: ResultStore, variant: str, seed: int) -> frozenset[Step]:
    """The (method, scope, amount) settings already in one run's pruning table."""
    steps = store.read_run(PRUNING, variant, seed, columns=STEP_COLUMNS).drop_duplicates()
    return frozenset(
        (method, scope, float(amount)) for method, scope, amount in steps.itertuples(index=False)
    )


def _datasets(specs: list[RunSpec]) -> dict[str, SegmentationData]:
    """Each distinct data section of the runs, loaded once, keyed by its JSON."""
    datasets: dict[str, SegmentationData] = {}
    for spec in specs:
        key = _data_key(spec)
        if key not in datasets:
            datasets[key] = load_data(spec.config.data)
    return datasets


def _data_key(spec: RunSpec) -> str:
    return spec.config.data.model_dump_json()


def _run_local(
    specs: list[RunSpec], datasets: dict[str, SegmentationData], config: PruningConfig
) -> dict[RunSpec, str | None]:
    """Analyse runs one after another in this process; errors are collected, not raised."""
    outcome: dict[RunSpec, str | None] = {}
    for spec in specs:
        try:
            analyse_run(spec, datasets[_data_key(spec)], config)
            outcome[spec] = None
        except Exception as error:  # one broken run must not stop the others
            outcome[spec] = f"{type(error).__name__}: {error}"
    return outcome


def _analyse_task(spec: RunSpec, data: SegmentationData, config: PruningConfig) -> str | None:
    """Body of one Ray task: the error message, or None when the run was analysed."""
    try:
        analyse_run(spec, data, config, threads=TASK_CPUS)
        return None
    except Exception as error:  # reported by the driver with the run's name
        return f"{type(error).__name__}: {error}"


def _run_ray(
    specs: list[RunSpec], datasets: dict[str, SegmentationData], config: PruningConfig
) -> dict[RunSpec, str | None]:
    """One Ray task per run; each dataset goes into the object store once."""
    import ray

    gpus = TASK_GPU_SHARE if ray.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray.remote(num_cpus=TASK_CPUS, num_gpus=gpus)(_analyse_task)
    refs = {key: ray.put(data) for key, data in datasets.items()}
    futures = {spec: task.remote(spec, refs[_data_key(spec)], config) for spec in specs}
    return {spec: ray.get(future) for spec, future in futures.items()}


def run_pruning(study: StudyDir, config: PruningConfig, on_ray: bool = False) -> dict[str, str]:
    """Analyse the pending runs, as Ray tasks when `on_ray` (the caller is connected to
    Ray), else one after another in this process; returns errors by "variant seed N"."""
    specs = pending_runs(study, config)
    errors: dict[str, str] = {}
    if specs:
        datasets = _datasets(specs)
        run = _run_ray if on_ray else _run_local
        for spec, error in run(specs, datasets, config).items():
            if error is not None:
                errors[f"{spec.variant} seed {spec.seed}"] = error
    return errors


def prune_study(study: StudyDir, config: PruningConfig, on_ray: bool = False) -> None:
    """Pruning sensitivity of every completed run of a study.

    Writes results/pruning, results/weight_distance and results/grad_norms (one file per
    run; runs that have all three, with every requested pruning step, are skipped; steps
    not stored yet are added to a run's rows); the summary shows them (`pruning_section`,
    ablate/prune/report.py). A run whose analysis fails is reported on stderr and left for
    the next call, so one broken run never costs the others (or the training before them)
    their results.

    Args:
        study: study directory with a runs table and checkpoints.
        config: methods, scopes, amounts and the variants to analyse (None: all).
        on_ray: spread the runs as Ray tasks (the caller is connected to Ray), else analyse
            them one after another in this process.

    Example:
        >>> study = StudyDir.open("runs/quickstart")
        >>> prune_study(study, PruningConfig(amounts=[0.5]))  # doctest: +SKIP
    """
    for run, error in run_pruning(study, config, on_ray).items():
        print(f"warning: pruning of {run} failed: {error}", file=sys.stderr)
