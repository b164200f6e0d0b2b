"""A run's problems (conflicts, errors, skipped entries, notes) in a spool.

An export may note something about every entry it writes (a generated
address it may not write back to the hub, for one): held as objects, a
million notes took hundreds of megabytes. They wait in a
:class:`dirsync.sync.spool.Spool` instead, in the order they came, for the
log and the report, which read them once or twice each.
"""

from __future__ import annotations

from collections.abc import Iterator

from dirsync.sync.report import Problem
from dirsync.sync.spool import MEMORY_ITEMS, Spool


class ProblemSpool:
    """Appended :class:`Problem` records, read back in order any number of times."""

    def __init__(self, memory_items: int = MEMORY_ITEMS) -> None:
        self._spool = Spool(memory_items)

    def append(self, problem: Problem) -> None:
        self._spool.append((problem.kind, problem.anchor, problem.dn, problem.message,
                            problem.line))

    def __iter__(self) -> Iterator[Problem]:
        for kind, anchor, dn, message, line in self._spool:
            yield Problem(kind, anchor, dn, message, line)

    def __len__(self) -> int:
        return len(self._spool)

    def close(self) -> None:
        self._spool.close()
