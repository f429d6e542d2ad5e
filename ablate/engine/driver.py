"""Ray on the driver: connect (or start a local instance), run the Tune trials, shut down.

No address: a local Ray instance with this machine's CPUs and GPUs, started inside the
command. `--address`/RAY_ADDRESS: join that cluster. A Ray already initialised by the caller
(a notebook, the test suite) is used as it is and left running.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING

import psutil

from ablate.config import Resources
from ablate.data.ebhi import SegmentationData
from ablate.engine.messages import short_error
from ablate.engine.progress import ProgressPrinter
from ablate.engine.trainable import TrialSetup, train_variant
from ablate.errors import UserError
from ablate.store import StudyLocation
from ablate.store.fs import disk_full, disk_full_error

if TYPE_CHECKING:
    import ray

CONNECT_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 30.0
"""A cluster that has not accepted a driver by then is treated as unreachable."""
RAY_EXIT_TIMEOUT_S = 15.0
"""How long the command waits for its local Ray processes to end before killing them."""
TUNE_DIR = ".tune"
RAY_CLIENT_PORT = 10001
# Tune writes CSV/JSON/TensorBoard logs of every trial by default; the store has all results.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Tune's newer console output prints a configuration box even at verbose=0; the classic one
# is silent there, leaving the terminal to ProgressPrinter.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C should stop at once (finished runs are safe in the store), not save Tune's state.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")


def address_source(address: str | None) -> str:
    """How the user named the cluster, for messages: `--address X` or `RAY_ADDRESS=X`."""
    if address:
        return f"--address {address}"
    return f"RAY_ADDRESS={os.environ.get('RAY_ADDRESS', '')}"


def _host_port(address: str, source: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://host[:port]`; None for `auto`, `local` and the like.

    Raises:
        UserError: a port that is not a number in 1..65535.
    """
    if address.startswith("ray://"):
        rest, default = address.removeprefix("ray://"), RAY_CLIENT_PORT
    elif "://" in address or ":" not in address:
        return None
    else:
        rest, default = address, None
    host, separator, port = rest.rpartition(":")
    if not separator:
        return (rest, default) if default else None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError(f"{source}: port {port!r} is not a number in 1..65535")
    return host, int(port)


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: `--address`, else RAY_ADDRESS, else None (start a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, source: str) -> None:
    """Fail fast on an address where nothing listens (ray.init would retry for minutes).

    Raises:
        UserError: naming the address as the user gave it (`source`).
    """
    target = _host_port(address, source)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"{source}: no Ray cluster reachable there ({reason})") from error


# Joining runs in a child process first: something that listens but is not Ray (a mistyped
# port) makes ray.init retry for minutes, and a child can be stopped at a deadline.
_JOIN_PROBE = (
    "import sys, ray; "
    "ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, "
    "logging_level='ERROR'); ray.shutdown()"
)


def check_joinable(address: str, source: str) -> None:
    """Join the cluster once from a child process, within JOIN_TIMEOUT_S.

    Raises:
        UserError: nothing Ray-like answered there, or joining failed.
    """
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _JOIN_PROBE, address],
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        raise UserError(
            f"{source}: no Ray cluster answered there within {JOIN_TIMEOUT_S:g} s"
        ) from error
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit code {probe.returncode}"
        raise UserError(f"{source}: cannot join this Ray cluster ({reason})")


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


@contextmanager
def ray_connection(address: str | None) -> Iterator[bool]:
    """Connect to Ray for the duration of the block; yields whether this call started it."""
    import ray

    if ray.is_initialized():
        yield False
        return
    source = address_source(address)
    address = cluster_address(address)
    if address:
        check_reachable(address, source)
    # Children the caller had before Ray started are not Ray's (a notebook's own servers).
    before = set() if address else {child.pid for child in _descendants()}
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
    except ConnectionError as error:
        raise UserError(f"{source}: cannot join this Ray cluster ({error})") from error
    try:
        yield True
    finally:
        # Taken before shutdown: once the raylet is gone its workers are no longer our
        # descendants, yet one may still be running a seed.
        processes = [] if address else [p for p in _descendants() if p.pid not in before]
        ray.shutdown()
        wait_for_exit(processes)


def _descendants() -> list[psutil.Process]:
    """Every process below this one (a local Ray's GCS, raylet and, through it, workers)."""
    return psutil.Process().children(recursive=True)


def wait_for_exit(processes: list[psutil.Process], timeout: float = RAY_EXIT_TIMEOUT_S) -> None:
    """Wait for the local Ray instance's processes to end; kill those still there at `timeout`.

    Ray stops its workers asynchronously: a worker that outlived `ablate run` could delete or
    write a run that the next command on the same study is producing.
    """
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)


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
    short = [
        f"resources.{name} is {need:g} per trial but the cluster has {has[name]:g}"
        for name, need in per_trial.items()
        if need > has[name]
    ]
    if not short:
        return
    text = "; ".join(short)
    if may_grow:
        print(f"warning: {text}; trials wait until the cluster grows", file=sys.stderr, flush=True)
        return
    raise UserError(
        f"the grid's trials do not fit this Ray instance: {text}. Lower them in the grid, "
        "or join a larger cluster with --address"
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


@dataclass(frozen=True)
class TuneOutcome:
    errors: dict[str, str]
    """variant -> error of trials that failed beyond their retries."""
    seconds: float


def run_trials(
    setup: TrialSetup,
    data: SegmentationData | ray.ObjectRef,
    pending: dict[str, list[int]],
    resources: Resources,
    max_concurrent: int | None,
    printer: ProgressPrinter,
    location: StudyLocation,
    may_grow: bool = False,
) -> TuneOutcome:
    """One Tune trial per variant with pending seeds; returns the trials' errors.

    `data` is best an ObjectRef (see commands._ship_dataset): Tune passes it on as it is,
    and each trial receives the dataset itself.
    """
    from ray import tune

    per_trial = trial_resources(resources)
    print(describe_cluster(per_trial, max_concurrent), flush=True)
    check_fits(per_trial, may_grow)
    trainable = tune.with_resources(
        tune.with_parameters(train_variant, data=data, setup=setup), per_trial
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"variant": tune.grid_search(list(pending))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            # A finished trial's worker (torch already imported) starts the next variant.
            reuse_actors=True,
            trial_name_creator=lambda trial: f"{trial.config['variant']}_{trial.trial_id}",
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=time.strftime("run-%Y%m%d-%H%M%S"),
            # Tune's own state (trial checkpoints: the seeds done) lives in the study too,
            # through the study's filesystem, so every node of a cluster reaches it.
            storage_path=location.path(TUNE_DIR),
            storage_filesystem=None if location.local else location.fs,
            verbose=0,
            callbacks=[printer],
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    began = time.monotonic()
    # Tune logs each trial failure with Ray's whole traceback; ProgressPrinter prints one
    # line per failure instead and the error files stay under the study's .tune folder.
    with quiet_loggers(TUNE_LOGGERS, logging.CRITICAL):
        try:
            results = tuner.fit()
        except Exception as error:
            if not disk_full(location):
                raise
            # Tune could not save (or read back) its state: say so, not its traceback.
            stopped = f"Ray Tune stopped: {short_error(str(error))}"
            raise disk_full_error(location, stopped) from error
    errors = {}
    for result in results:
        if result.error is not None:
            variant = (result.config or {}).get("variant", "?")
            errors[variant] = short_error(str(result.error))
    return TuneOutcome(errors=errors, seconds=time.monotonic() - began)
