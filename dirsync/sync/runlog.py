"""The log events of a run as a whole: its end, and its per-entry problems.

``dirsync.run`` logs at INFO whatever the ``-v`` level, so that a run's
end is in the journal under the default level (the logger's own level is
set by the command line, see :func:`dirsync.cli.main._setup_logging`). With
``--log-format json`` every field is a JSON field of its own: the counts
an object, not text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("dirsync.run")

#: Per-entry problems logged one by one in a run; the rest are counted in one line.
PROBLEM_LINES = 100


def counts_text(counts: dict[str, int]) -> str:
    """``add 3, error 1`` (the counts that are not zero), or ``no changes``."""
    shown = ", ".join(f"{name} {value}" for name, value in counts.items() if value)
    return shown or "no changes"


def log_run_end(result: Any) -> None:
    """The end-of-run event of a :class:`~dirsync.sync.pipeline.RunResult`."""
    counts = result.counts.as_dict()
    level = logging.INFO if result.status == "ok" else logging.WARNING
    text = f"{result.connection} {result.direction}: {result.status}: {counts_text(counts)}"
    if result.message:
        text += f" ({result.message})"
    log.log(level, "%s", text, extra={"fields": {
        "connection": result.connection, "direction": result.direction,
        "run": result.run_id, "action": "run", "result": result.status,
        "mode": result.mode, "dry_run": result.dry_run, "counts": counts,
        "started": result.started, "ended": result.ended,
        "report": str(result.report) if result.report else None,
        # "message" is the event's own text: the run's message is its reason.
        **({"reason": result.message} if result.message else {})}})


def log_problems(connection: str, run: int, direction: str, problems: Iterable[Any]) -> None:
    """One warning per conflict or rejected entry (not per note), up to PROBLEM_LINES."""
    shown = more = 0
    for problem in problems:
        if problem.kind not in ("error", "conflict"):
            continue
        if shown >= PROBLEM_LINES:
            more += 1
            continue
        shown += 1
        where = problem.dn or problem.anchor or ""
        line = f" (line {problem.line})" if problem.line is not None else ""
        fields: dict[str, Any] = {"connection": connection, "run": run,
                                  "direction": direction, "action": problem.kind,
                                  "result": "failed", "error": problem.message}
        if problem.dn:
            fields["dn"] = problem.dn
        if problem.anchor:
            fields["anchor"] = problem.anchor
        if problem.line is not None:
            fields["line"] = problem.line
        log.warning("%s: %s %s%s: %s", connection, problem.kind, where, line, problem.message,
                    extra={"fields": fields})
    if more:
        log.warning("%s: %d more conflicts or errors, in the run's report", connection, more,
                    extra={"fields": {"connection": connection, "run": run,
                                      "direction": direction, "action": "problems",
                                      "more": more}})
