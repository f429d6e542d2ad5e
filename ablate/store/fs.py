"""Where a study lives: a local folder or a pyarrow filesystem URI (file://, s3://, gs://).

Every write of the store goes through one `pyarrow.fs.FileSystem`, so a study directory on a
laptop and one in a bucket take the same code path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from ablate.errors import MachineError, UserError, out_of_space

URI_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PROBE_BYTES = 1 << 20
"""Size of the probe file that `check_writable` writes: a full disk fails on it."""
MIN_FREE_MIB = 16
"""A study directory's disk needs this much room to start (checkpoints, tables, Tune state)."""


def is_uri(location: str | Path) -> bool:
    """True for `scheme://...` locations, False for plain paths."""
    return bool(URI_PATTERN.match(str(location)))


@dataclass(frozen=True)
class StudyLocation:
    """A study directory resolved to a filesystem and a path inside it.

    Attributes:
        uri: what the user gave (absolute path for local folders).
        fs: the filesystem every read and write goes through.
        root: the study directory's path inside `fs`.
        local: True when `root` is a folder of this machine (`LocalFileSystem`).
    """

    uri: str
    fs: pafs.FileSystem
    root: str
    local: bool

    def path(self, *parts: str) -> str:
        """The path inside `fs` of `parts` below the study directory."""
        return "/".join([self.root.rstrip("/"), *parts])

    def local_path(self, *parts: str) -> Path:
        """The local path of `parts`; only for local studies."""
        if not self.local:
            raise ValueError(f"{self.uri} is not a local folder")
        return Path(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        """Whether a file or folder exists below the study directory."""
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def makedirs(self, *parts: str) -> None:
        """Create a folder (and its parents) below the study directory."""
        self.check_inside(self.path(*parts))
        self.fs.create_dir(self.path(*parts), recursive=True)

    def check_inside(self, path: str) -> None:
        """Refuse a local write or delete at `path` that a symbolic link would take outside
        the study directory (a crafted `summary -> /etc` must not be written through).

        The deepest part of `path` that exists must resolve inside the study directory;
        what does not exist yet is created below it. Object stores have no links.

        Raises:
            UserError: naming the link and the study directory.
        """
        if not self.local:
            return
        root = os.path.realpath(self.root)
        existing = path
        while not os.path.lexists(existing) and existing not in (self.root, "/"):
            existing = os.path.dirname(existing)
        resolved = os.path.realpath(existing)
        if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
            raise UserError(
                f"{existing} leads outside the study directory {self.root} (to {resolved}): "
                "ablate never writes through a link that leaves the study"
            )

    def read_text(self, *parts: str) -> str | None:
        """A text file's content, or None when it does not exist."""
        if not self.exists(*parts):
            return None
        with self.fs.open_input_stream(self.path(*parts)) as stream:
            return stream.read().decode("utf-8")

    def write_text(self, text: str, *parts: str) -> None:
        """Write a text file atomically: a temporary name, then a rename."""
        self.write_bytes(text.encode("utf-8"), *parts)

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write a file atomically: a temporary name, then a rename."""
        final = self.path(*parts)
        folder = final.rsplit("/", 1)[0]
        self.check_inside(folder)
        self.fs.create_dir(folder, recursive=True)
        temp = temp_name(final)
        try:
            with self.fs.open_output_stream(temp) as stream:
                stream.write(data)
            self.fs.move(temp, final)
        except BaseException:
            remove_quietly(self.fs, temp)
            raise

    def delete(self, *parts: str) -> None:
        """Remove a file below the study directory if it exists."""
        self.check_inside(self.path(*parts).rsplit("/", 1)[0])
        remove_quietly(self.fs, self.path(*parts))

    def delete_tree(self, *parts: str) -> None:
        """Remove a folder below the study directory (the study itself without `parts`)."""
        self.check_inside(self.path(*parts))
        self.fs.delete_dir(self.path(*parts))

    def put_dir(self, local_dir: Path, *parts: str) -> None:
        """Copy a local folder's files to `parts` below the study directory (overwriting).

        For a local study whose target is `local_dir` itself this does nothing: runs write
        their checkpoints in place there.
        """
        target = self.path(*parts)
        if self.local and Path(target).resolve() == Path(local_dir).resolve():
            return
        for file in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            relative = file.relative_to(local_dir).as_posix()
            destination = f"{target}/{relative}"
            self.check_inside(destination.rsplit("/", 1)[0])
            self.fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(
                str(file),
                destination,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=self.fs,
            )


def temp_name(final: str) -> str:
    """A unique temporary sibling of `final`.

    The leading dot hides it from pyarrow dataset discovery (and from `completed()`), so a
    write killed midway never reads as a finished file.
    """
    folder, _, name = final.rpartition("/")
    return f"{folder}/.{name}.tmp-{uuid.uuid4().hex}"


def remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    except OSError:
        pass


def resolve_study(location: str | Path) -> StudyLocation:
    """Resolve a study directory given as a path or URI.

    Raises:
        UserError: the URI's filesystem is unknown or cannot be reached.
    """
    text = str(location)
    if not is_uri(text):
        root = str(Path(text).expanduser().resolve())
        return StudyLocation(uri=root, fs=pafs.LocalFileSystem(), root=root, local=True)
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, OSError, ValueError) as error:
        raise UserError(f"study directory {text}: cannot open this URI ({error})") from error
    local = isinstance(fs, pafs.LocalFileSystem)
    return StudyLocation(uri=text, fs=fs, root=root.rstrip("/") or "/", local=local)


def check_writable(study: StudyLocation) -> None:
    """Create the study directory and write (then remove) a 1 MiB probe file.

    Raises:
        UserError: the folder cannot be created or written, or the disk is full.
    """
    probe = f".write-probe-{uuid.uuid4().hex}"
    try:
        study.makedirs()
        study.write_bytes(b"\0" * PROBE_BYTES, probe)
        study.delete(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"study directory {study.uri} cannot be written: {reason}") from error
    if disk_full(study):
        raise UserError(f"study directory {study.uri}: only {free_mib(study)} MiB free on its disk")


def free_mib(study: StudyLocation) -> int | None:
    """Free space of a local study directory's disk in MiB; None for remote stores."""
    if not study.local:
        return None
    return shutil.disk_usage(study.root).free // PROBE_BYTES


def disk_full(study: StudyLocation) -> bool:
    """Whether a local study directory's disk has less than MIN_FREE_MIB left."""
    free = free_mib(study)
    return free is not None and free < MIN_FREE_MIB


def disk_full_error(study: StudyLocation, stopped: str) -> MachineError:
    """The one message of a study that its full disk stopped: where, the room left, what
    `stopped`, and how to continue."""
    free = free_mib(study)
    room = "" if free is None else f"{free} MiB free; "
    return MachineError(
        f"the disk of study directory {study.uri} is full ({room}{stopped}). Finished runs are "
        "kept: free some space and run the same command again to continue the study"
    )


@contextlib.contextmanager
def stops_when_disk_full(study: StudyLocation, step: str) -> Iterator[None]:
    """Turn a write that failed on a full disk during `step` into one MachineError.

    Raises:
        MachineError: see `disk_full_error`.
    """
    try:
        yield
    except OSError as error:
        if not (out_of_space(error) or disk_full(study)):
            raise
        raise disk_full_error(study, f"{step} stopped") from error
