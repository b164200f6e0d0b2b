"""One run of a connection at a time, across processes.

A run holds an exclusive ``flock`` on ``<state folder>/locks/<connection>.lock``
for as long as it lasts. The kernel drops the lock when the process dies,
however it dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from types import TracebackType


class LockBusy(Exception):
    """Another run of this connection holds the lock."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class ConnectionLock:
    def __init__(self, state_dir: Path, connection: str) -> None:
        self.path = state_dir / "locks" / f"{_safe(connection)}.lock"
        self.connection = connection
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`LockBusy`; never waits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"connection {self.connection!r} is being run by another "
                           "process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ConnectionLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
