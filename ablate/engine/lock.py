"""study.lock: one `ablate run` per study directory at a time.

The lock file holds the owner's pid and host. A second run on the same study refuses with a
message naming them; a lock left by a process that died (same host, pid gone) is taken over,
so a killed run never blocks the next one. Local studies create the file with O_EXCL (atomic);
on object stores (s3://) the check-then-write is best effort, as those have no exclusive create.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass

from ablate.errors import UserError
from ablate.store import StudyDir
from ablate.store.study import LOCK_FILE


@dataclass(frozen=True)
class LockOwner:
    pid: int
    host: str
    started_at: str

    @classmethod
    def me(cls) -> LockOwner:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        return cls(pid=os.getpid(), host=socket.gethostname(), started_at=started)

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started_at": self.started_at})

    @classmethod
    def from_json(cls, text: str) -> LockOwner | None:
        try:
            raw = json.loads(text)
            return cls(
                pid=int(raw["pid"]), host=str(raw["host"]), started_at=str(raw["started_at"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def is_dead(self) -> bool:
        """True only when the owner certainly died: same host and no such process."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class StudyLock:
    """Context manager holding `STUDY_DIR/study.lock`.

    Example:
        >>> with StudyLock(StudyDir.open("runs/quickstart")):
        ...     run_the_study()
    """

    def __init__(self, study: StudyDir) -> None:
        self.study = study.location
        self.owner = LockOwner.me()
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise UserError naming the run that holds it."""
        self.study.makedirs()
        if self._try_create():
            return
        holder = LockOwner.from_json(self.study.read_text(LOCK_FILE) or "")
        if holder is not None and holder.is_dead():
            self.study.delete(LOCK_FILE)
            if self._try_create():
                return
            holder = LockOwner.from_json(self.study.read_text(LOCK_FILE) or "")
        who = (
            f"pid {holder.pid} on {holder.host}, started {holder.started_at}"
            if holder
            else "an unreadable lock file"
        )
        raise UserError(
            f"study directory {self.study.uri} is in use by another `ablate run` ({who}); "
            f"wait for it to finish, or delete {self.study.path(LOCK_FILE)} if that run is gone"
        )

    def _try_create(self) -> bool:
        if self.study.local:
            try:
                fd = os.open(
                    self.study.path(LOCK_FILE), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644
                )
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as file:
                file.write(self.owner.to_json())
        else:
            if self.study.exists(LOCK_FILE):
                return False
            self.study.write_text(self.owner.to_json(), LOCK_FILE)
        self.held = True
        return True

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if not self.held:
            return
        self.held = False
        current = LockOwner.from_json(self.study.read_text(LOCK_FILE) or "")
        if current == self.owner:
            with contextlib.suppress(OSError):
                self.study.delete(LOCK_FILE)

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
