"""State rows written a batch at a time, behind the changes they record.

A commit per row is a write to SQLite's log for each change the hub
confirms; on a first sync that cost as much client time as mapping the
entry. :class:`WriteBehind` keeps the rows of confirmed changes for at most
a fraction of a second (or a few hundred rows) and then writes them in one
transaction. Every row still describes a change the hub holds; a run
killed meanwhile loses the last rows only, and the next run finds those
entries in the hub by their marker and anchor, as it finds an add that was
confirmed but never recorded. Between batches the file is free, so another
process that wants to write to it (a second run, ``dirsync status``) does
not wait behind a long transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from dirsync.state.store import StateStore

T = TypeVar("T")

#: The longest a confirmed change's row waits, in seconds, and the most rows.
WAIT = 0.25
ROWS = 500


class WriteBehind(Generic[T]):
    """Items handed to ``write`` inside one transaction, a batch at a time."""

    def __init__(self, store: StateStore, write: Callable[[T], None], *,
                 seconds: float = WAIT, rows: int = ROWS) -> None:
        self.store = store
        self.write = write
        self.seconds = seconds
        self.rows = rows
        self.pending: list[T] = []
        self._due = 0.0

    def add(self, item: T) -> None:
        pending = self.pending
        if not pending:
            self._due = time.monotonic() + self.seconds
        pending.append(item)
        if len(pending) >= self.rows or time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        items, self.pending = self.pending, []
        with self.store.transaction():
            for item in items:
                self.write(item)


@contextmanager
def write_behind(store: StateStore, write: Callable[[T], None], **options: float
                 ) -> Iterator[WriteBehind[T]]:
    """A :class:`WriteBehind` whose last rows are written however the block ends."""
    batch: WriteBehind[T] = WriteBehind(store, write, **options)  # type: ignore[arg-type]
    try:
        yield batch
    finally:
        batch.flush()
