"""A connection's state rows, read as a run needs them instead of loaded whole.

A run compares every source entry with its state row. Loading them all
into a dictionary first made a run of a million entries hold a million
rows; :class:`StateRows` answers ``get`` from the store's primary key,
a few hundred keys per query when the run says in advance which it will
ask for (:meth:`StateRows.prefetch`), and iterates in anchor order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dirsync.state.store import StateRow, StateStore

#: Anchors per ``IN (...)`` query (below SQLite's oldest parameter limit of 999).
_CHUNK = 500
_MISSING = object()


class StateRows(Mapping[str, StateRow]):
    """The rows of one connection's direction, as a read-only mapping by anchor."""

    def __init__(self, state: StateStore, connection: str, direction: str) -> None:
        self.db = state.db
        self.where = (connection, direction)
        self._cache: dict[str, Any] = {}

    def prefetch(self, anchors: Iterable[str]) -> None:
        """Read the rows of these anchors in a few queries, for the ``get`` calls to come."""
        wanted = list(dict.fromkeys(anchors))
        cache: dict[str, Any] = dict.fromkeys(wanted, _MISSING)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for anchor, dn, hash_, kind in self.db.execute(
                    "SELECT anchor, dn, hash, kind FROM entries WHERE connection=? "
                    f"AND direction=? AND anchor IN ({marks})", (*self.where, *chunk)):
                cache[anchor] = StateRow(dn, hash_, kind)
        self._cache = cache

    def get(self, anchor: str, default: Any = None) -> Any:
        found = self._cache.get(anchor, None)
        if found is _MISSING:
            return default
        if found is not None:
            return found
        row = self.db.execute(
            "SELECT dn, hash, kind FROM entries WHERE connection=? AND direction=? "
            "AND anchor=?", (*self.where, anchor)).fetchone()
        return default if row is None else StateRow(*row)

    def __getitem__(self, anchor: str) -> StateRow:
        found = self.get(anchor, _MISSING)
        if found is _MISSING:
            raise KeyError(anchor)
        return found  # type: ignore[no-any-return]

    def __contains__(self, anchor: object) -> bool:
        return isinstance(anchor, str) and self.get(anchor, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return int(self.db.execute(
            "SELECT count(*) FROM entries WHERE connection=? AND direction=?",
            self.where).fetchone()[0])

    def __iter__(self) -> Iterator[str]:
        """The anchors in order (the store's primary key): read them all before
        changing the store's rows."""
        for (anchor,) in self.db.execute(
                "SELECT anchor FROM entries WHERE connection=? AND direction=? "
                "ORDER BY anchor", self.where):
            yield anchor
