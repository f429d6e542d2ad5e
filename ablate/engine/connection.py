"""Connecting to Ray: join a cluster (`--address`, RAY_ADDRESS) or start a local instance.

The one place that knows how ablate reaches Ray, shared by `ablate run` and `ablate prune`.
An address is checked (something listens, it is Ray) before anything is written, because
`ray.init` on a wrong address retries for minutes. A local instance started here is stopped,
and its processes waited for, when the block ends.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psutil

from ablate.errors import UserError

CONNECT_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 30.0
"""A cluster that has not accepted a driver by then is treated as unreachable."""
RAY_EXIT_TIMEOUT_S = 15.0
"""How long the command waits for its local Ray processes to end before killing them."""
RAY_CLIENT_PORT = 10001


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


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""What an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame."""
SETTINGS_FRAME = 0x04


def check_reachable(address: str, source: str) -> None:
    """Refuse in seconds an address where nothing listens, or something that is not Ray
    (`ray.init` would retry there for minutes).

    Ray's GCS and its client server speak gRPC, i.e. HTTP/2: sent a client preface, such a
    server answers with a SETTINGS frame; a web server, a database or a port that accepts
    and stays silent does not.

    Raises:
        UserError: naming the address as the user gave it (`source`).
    """
    target = _host_port(address, source)
    if target is None:
        return
    try:
        connection = socket.create_connection(target, timeout=CONNECT_TIMEOUT_S)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"{source}: no Ray cluster reachable there ({reason})") from error
    with connection:
        try:
            connection.sendall(HTTP2_PREFACE)
            header = connection.recv(9)
        except OSError:
            header = b""
    if len(header) < 9 or header[3] != SETTINGS_FRAME:
        raise UserError(
            f"{source}: no Ray cluster answered there (it does not speak gRPC, Ray's protocol)"
        )


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


def ray_is_running() -> bool:
    """Whether this process (a notebook, the test suite) has already initialised Ray."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def check_address(address: str | None) -> None:
    """An unreachable or non-Ray address is bad input: refuse it before anything is written.

    Raises:
        UserError: naming the address as the user gave it.
    """
    target = cluster_address(address)
    if not target:
        return
    if ray_is_running():
        return  # the caller's Ray is used as it is
    source = address_source(address)
    check_reachable(target, source)
    check_joinable(target, source)
