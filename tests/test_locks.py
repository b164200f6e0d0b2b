"""The connection lock: re-entrant in its thread, shared for plans, and what it says of the dead."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dirsync.state.locks import ConnectionLock, LockBusy, nobody_runs

HOLD = """
import sys, time
from pathlib import Path
from dirsync.state.locks import ConnectionLock
lock = ConnectionLock(Path(sys.argv[1]), "po1", shared=sys.argv[2] == "shared")
lock.acquire()
print("held", flush=True)
time.sleep(30)
"""


def holding(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), mode],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def stop(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait()
    if holder.stdout:
        holder.stdout.close()


def test_re_entrant_in_the_thread_that_holds_it(tmp_path: Path) -> None:
    assert nobody_runs(tmp_path, "po1")
    with ConnectionLock(tmp_path, "po1"):
        with ConnectionLock(tmp_path, "po1"):     # the scheduler's, then the run's
            assert not nobody_runs(tmp_path, "po1")
        assert not nobody_runs(tmp_path, "po1")   # the outer one still holds it
        failed: list[BaseException] = []

        def other() -> None:
            try:
                ConnectionLock(tmp_path, "po1").acquire()
            except LockBusy as exc:
                failed.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(failed) == 1                   # another thread is another run
    assert nobody_runs(tmp_path, "po1")


def test_plans_share_it_and_a_sync_does_not(tmp_path: Path) -> None:
    holder = holding(tmp_path, "shared")
    try:
        with ConnectionLock(tmp_path, "po1", shared=True):
            pass
        with pytest.raises(LockBusy):
            ConnectionLock(tmp_path, "po1").acquire()
        assert not nobody_runs(tmp_path, "po1")
    finally:
        stop(holder)
    assert nobody_runs(tmp_path, "po1")           # the kernel dropped the dead holder's lock
    holder = holding(tmp_path, "exclusive")
    try:
        with pytest.raises(LockBusy):
            ConnectionLock(tmp_path, "po1", shared=True).acquire()
    finally:
        stop(holder)
