"""A polite stop: set on SIGTERM/SIGINT, checked by the engine between changes.

The engine finishes the changes in flight and records them in the state
store before it looks here, so a stopped run leaves state that matches the
hub, and the run ends in the history as ``interrupted``.

The handlers only set an event: raising KeyboardInterrupt inside
python-ldap can leave its connection lock taken, after which the unbind
at the end of the run waits for ever. A second signal means "now": the
process ends at once, without cleaning up (the next run, or ``dirsync
status``, sees that its run died, and the next run converges).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("dirsync.interrupt")

stop_requested = threading.Event()

#: The signal that asked for the stop (0 when none did).
received = 0

#: The signals that stop a run.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status() -> int:
    """128 + the signal, the shell's convention for a process a signal ended."""
    return 128 + (received or signal.SIGINT)


def _now(signum: int) -> None:
    try:
        os.write(sys.stderr.fileno(), f"dirsync: signal {signum} again: stopping now\n"
                 .encode())
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)


def request_stop(signum: int, _frame: Any = None) -> None:
    """The signal handler: the first signal asks for a stop, a second one ends the process."""
    global received
    if stop_requested.is_set():
        _now(signum)
    received = signum
    stop_requested.set()
    log.warning("signal %d: finishing the changes in flight, then stopping (again to stop "
                "at once)", signum, extra={"fields": {"action": "signal", "signal": signum}})


@contextmanager
def stopping_on_signals(then: Callable[[], None] | None = None) -> Iterator[None]:
    """Install :func:`request_stop` for SIGINT and SIGTERM (main thread only).

    ``then`` also runs on the first signal (the scheduler stops its loop).
    """
    def handler(signum: int, frame: Any) -> None:
        first = not stop_requested.is_set()
        request_stop(signum, frame)
        if first and then is not None:
            then()

    global received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A new command starts unstopped (tests run several in one process).
    stop_requested.clear()
    received = 0
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
