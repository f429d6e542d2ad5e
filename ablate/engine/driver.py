"""Ray Tune on the driver: one trial per variant, resources per trial, progress, errors.

Connecting to Ray (a local instance or a cluster) is `ablate.engine.connection`'s job; this
module runs the trials once connected.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version

from ablate.config import Resources
from ablate.engine.messages import short_error
from ablate.engine.progress import ProgressPrinter
from ablate.engine.trainable import TrialSetup, train_variant
from ablate.errors import UserError
from ablate.store import StudyDir
from ablate.store.fs import disk_full, disk_full_error

# Tune writes CSV/JSON/TensorBoard logs of every trial by default; the store has all results.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Tune's newer console output prints a configuration box even at verbose=0; the classic one
# is silent there, leaving the terminal to ProgressPrinter.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C should stop at once (finished runs are safe in the store), not save Tune's state.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

Trainable = Callable[..., None]
"""A Tune function trainable taking (config, *, data, setup), like `train_variant`."""

TUNE_LOGGERS = ("ray.tune", "ray.train", "ray.air")


@contextmanager
def quiet_loggers(names: tuple[str, ...], level: int = logging.ERROR) -> Iterator[None]:
    """Raise loggers to `level` for the block (also when the caller initialised Ray)."""
    loggers = [logging.getLogger(name) for name in names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous, strict=True):
            logger.setLevel(old)


def trial_resources(resources: Resources) -> dict[str, float]:
    """CPU and GPU of one trial; `gpu: null` means 1 where the cluster has GPUs, else 0."""
    import ray

    gpu = resources.gpu
    if gpu is None:
        gpu = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"cpu": resources.cpu, "gpu": gpu}


def check_fits(per_trial: dict[str, float], may_grow: bool) -> None:
    """Refuse trials bigger than the whole cluster: Tune would leave them pending forever.

    A joined cluster (--address) may grow (autoscaler), so there it is only a warning.

    Raises:
        UserError: naming the resource, what a trial asks and what the cluster has.
    """
    import ray

    cluster = ray.cluster_resources()
    has = {name: cluster.get(name.upper(), 0) for name in per_trial}
    text = _shortfall(per_trial, has, "the cluster")
    if not text:
        return
    if may_grow:
        print(f"warning: {text}; trials wait until the cluster grows", file=sys.stderr, flush=True)
        return
    raise UserError(
        f"the grid's trials do not fit this Ray instance: {text}. Lower them in the grid, "
        "or join a larger cluster with --address"
    )


def check_fits_this_machine(resources: Resources) -> None:
    """Before a local Ray instance starts (no --address): refuse trials bigger than this
    machine, so a grid asking for 8 CPUs on a 2-core laptop writes nothing.

    Raises:
        UserError: naming the resource, what a trial asks and what the machine has.
    """
    import torch

    has = {"cpu": len(os.sched_getaffinity(0)), "gpu": torch.cuda.device_count()}
    text = _shortfall({"cpu": resources.cpu, "gpu": resources.gpu or 0.0}, has, "this machine")
    if text:
        raise UserError(
            f"the grid's trials do not fit this machine: {text}. Lower them in the grid, or "
            "join a larger cluster with --address"
        )


def _shortfall(need: dict[str, float], has: dict[str, float], where: str) -> str:
    """'resources.cpu is 8 per trial but this machine has 2' for each resource short."""
    return "; ".join(
        f"resources.{name} is {amount:g} per trial but {where} has {has[name]:g}"
        for name, amount in need.items()
        if amount > has[name]
    )


def describe_cluster(resources: dict[str, float], max_concurrent: int | None) -> str:
    """One line: what Ray has and what each trial gets."""
    import ray

    cluster = ray.cluster_resources()
    nodes = len([node for node in ray.nodes() if node.get("Alive")])
    concurrency = f"up to {max_concurrent}" if max_concurrent else "as many as fit"
    return (
        f"ray: {nodes} node(s), {cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU; "
        f"each trial {resources['cpu']:g} CPU + {resources['gpu']:g} GPU, {concurrency} at once"
    )


def versions() -> dict[str, str]:
    return {"torch": version("torch"), "ray": version("ray")}


def run_trials(
    setup: TrialSetup,
    data: object,
    pending: dict[str, list[int]],
    resources: Resources,
    max_concurrent: int | None,
    printer: ProgressPrinter,
    study: StudyDir,
    may_grow: bool = False,
    trainable: Trainable = train_variant,
    name_suffix: str = "",
) -> dict[str, str]:
    """One Tune trial per variant with pending seeds; returns variant -> error of the trials
    that failed beyond their retries. `name_suffix` ends the name of Tune's run folder
    (adaptive rounds: "-round2", so two rounds in one second never share a folder).

    `data` is best the dataset's ObjectRef (`ablate.engine.study.ship_dataset`): Tune passes
    it on as it is, and each trial receives the dataset itself. `trainable` is the trial's
    function (tests wrap `train_variant` to inject faults from outside the product).
    """
    from ray import tune

    per_trial = trial_resources(resources)
    print(describe_cluster(per_trial, max_concurrent), flush=True)
    check_fits(per_trial, may_grow)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=data, setup=setup), per_trial),
        param_space={"variant": tune.grid_search(list(pending))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            # A finished trial's worker (torch already imported) starts the next variant.
            reuse_actors=True,
            trial_name_creator=lambda trial: f"{trial.config['variant']}_{trial.trial_id}",
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=time.strftime("run-%Y%m%d-%H%M%S") + name_suffix,
            # Tune's own state (trial checkpoints: the seeds done) lives in the study too,
            # through the study's filesystem, so every node of a cluster reaches it.
            storage_path=study.tune_path(),
            storage_filesystem=None if study.location.local else study.location.fs,
            verbose=0,
            callbacks=[printer],
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    # Tune logs each trial failure with Ray's whole traceback; ProgressPrinter prints one
    # line per failure instead and the error files stay under the study's .tune folder.
    with quiet_loggers(TUNE_LOGGERS, logging.CRITICAL):
        try:
            results = tuner.fit()
        except Exception as error:
            if not disk_full(study.location):
                raise
            # Tune could not save (or read back) its state: say so, not its traceback.
            stopped = f"Ray Tune stopped: {short_error(str(error))}"
            raise disk_full_error(study.location, stopped) from error
    errors = {}
    for result in results:
        if result.error is not None:
            variant = (result.config or {}).get("variant", "?")
            errors[variant] = short_error(str(result.error))
    return errors
