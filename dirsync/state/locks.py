"""One run of a connection at a time, across processes.

A run holds an exclusive ``flock`` on ``<state folder>/locks/<connection>.lock``
for as long as it lasts (a plan, which changes nothing, holds it shared:
plans may overlap each other, not a sync). The kernel drops the lock when
the process dies, however it dies, so a killed run never leaves a stale
lock behind, and a lock that can be taken means that no run of the
connection is alive: a run the history still shows as going has died
(:func:`dirsync.state.runlife.reap`).

Within one process the lock is re-entrant for the thread that holds it
(the scheduler takes it around a run, and the run takes it again).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from pathlib import Path
from types import TracebackType

from dirsync.errors import DirsyncError


class LockBusy(DirsyncError):
    """Another run of this connection holds the lock."""

    exit_status = 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


#: Locks this process holds: path -> (holding thread, depth).
_held: dict[Path, tuple[int, int]] = {}
_held_guard = threading.Lock()


class ConnectionLock:
    def __init__(self, state_dir: Path, connection: str, *, shared: bool = False) -> None:
        self.path = state_dir / "locks" / f"{_safe(connection)}.lock"
        self.connection = connection
        self.shared = shared
        self._fd: int | None = None
        self._nested = False

    def acquire(self) -> None:
        """Take the lock now or raise :class:`LockBusy`; never waits."""
        me = threading.get_ident()
        with _held_guard:
            holder = _held.get(self.path)
            if holder is not None and holder[0] == me:
                _held[self.path] = (me, holder[1] + 1)
                self._nested = True
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"connection {self.connection!r} is being run by another "
                           "process") from None
        if not self.shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        with _held_guard:
            _held[self.path] = (me, 1)

    def release(self) -> None:
        if self._nested:
            with _held_guard:
                holder, depth = _held[self.path]
                _held[self.path] = (holder, depth - 1)
            self._nested = False
            return
        if self._fd is not None:
            with _held_guard:
                _held.pop(self.path, None)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ConnectionLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def nobody_runs(state_dir: Path, connection: str) -> bool:
    """Whether no process (this one included) holds the connection's lock right now."""
    path = state_dir / "locks" / f"{_safe(connection)}.lock"
    with _held_guard:
        if path in _held:
            return False
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)
