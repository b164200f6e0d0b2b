"""One log event per applied change (``dirsync.changes``), for both directions.

With ``--log-format json`` each event is one line carrying the connection,
the run id, the direction, the action, the DN and the result: the seeds'
event log, which an administrator greps for "what happened to this entry".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

changes_log = logging.getLogger("dirsync.changes")


def log_result(connection: str, run: int, direction: str, result: Any) -> None:
    """The event for one :class:`~dirsync.directories.base.ApplyResult`."""
    failed = result.error is not None
    # A failed change is a warning: it is logged at the default level.
    level = logging.WARNING if failed else logging.INFO
    if not changes_log.isEnabledFor(level):
        return  # (without building the event: a first sync has one per entry)
    # The record is made here rather than by changes_log.log(), which looks
    # up the calling frame for a file and line no format of dirsync shows:
    # that look-up cost as much as the rest of the event.
    changes_log.handle(changes_log.makeRecord(
        changes_log.name, level, "(unknown file)", 0, "%s: %s %s: %s",
        (connection, result.change.kind, result.change.dn,
         f"failed: {result.error}" if failed else "applied"), None,
        extra={"fields": {
            "connection": connection, "run": run, "direction": direction,
            "action": result.change.kind, "dn": result.change.dn,
            "result": "failed" if failed else "applied",
            **({"error": str(result.error)} if failed else {})}}))


def logged(send: Callable[..., Iterable[Any]], connection: str, run: int,
           direction: str) -> Callable[..., Iterator[Any]]:
    """``send`` (a directory's ``apply``), logging each result as it comes back."""
    def apply(changes: Iterable[Any], **options: Any) -> Iterator[Any]:
        for result in send(changes, **options):
            log_result(connection, run, direction, result)
            yield result
    return apply
