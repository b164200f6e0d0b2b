"""The DNs an import's entries keep, asked about one name at a time.

To place the entries it maps again, a run must know which names the
other entries of its connection hold in the hub. Building that map from
the hub's records made a run hold one more string per entry; with the
records in a scratch table (:mod:`dirsync.sync.scratch`) the names are
indexed there instead, once and only in a run that places something, and
:class:`HeldNames` answers :func:`dirsync.sync.plan.assign_dns` from it.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dirsync.entry import normalize_dn
from dirsync.sync.scratch import DiskMap, DiskSet, DiskSubset, LookedUp


class HeldNames(LookedUp[str]):
    """Normalized DN -> anchor of the names this connection's entries keep.

    ``placed``: names given out in this run (a first sync's adds);
    ``ours``: the hub's records by anchor, whose names count unless their
    anchor is in ``excluded`` (placed again, or deleted). Names assigned
    through this mapping are kept in memory: they are the few being placed.
    """

    def __init__(self, placed: Mapping[str, str], ours: Mapping[str, Any],
                 excluded: set[str]) -> None:
        self.placed = placed
        self.ours = ours
        self.excluded = excluded
        self.own: dict[str, str] = {}
        self._names: dict[str, str] | str | None = None   # dict, or a scratch table's name

    def _hub_names(self) -> dict[str, str] | str:
        if self._names is None:
            ours = self.ours
            if isinstance(ours, DiskMap):
                ours.flush()
                db = ours.db
                table = f"{ours.name}_names"
                db.create_function("dn_key", 1,
                                   lambda data: normalize_dn(marshal.loads(data)[0]),
                                   deterministic=True)
                db.execute(f"CREATE TABLE {table} AS SELECT dn_key(value) AS name, "
                           f"key AS anchor FROM {ours.name}")
                db.execute(f"CREATE INDEX {table}_by_name ON {table} (name)")
                self._names = table
            else:
                self._names = {normalize_dn(r.dn): a for a, r in ours.items()}
        return self._names

    def _hub_holder(self, key: str) -> str | None:
        names = self._hub_names()
        if isinstance(names, dict):
            anchor = names.get(key)
        else:
            assert isinstance(self.ours, DiskMap)
            row = self.ours.db.execute(f"SELECT anchor FROM {names} WHERE name=?",
                                       (key,)).fetchone()
            anchor = None if row is None else row[0]
        return None if anchor is None or anchor in self.excluded else anchor

    def get(self, key: str, default: Any = None) -> Any:
        for found in (self.own.get(key), self.placed.get(key)):
            if found is not None:
                return found
        holder = self._hub_holder(key)
        return default if holder is None else holder

    def __setitem__(self, key: str, anchor: str) -> None:
        self.own[key] = anchor

    def __delitem__(self, key: str) -> None:
        del self.own[key]

    def __iter__(self) -> Iterator[str]:
        """The names assigned through this mapping (the others are only looked up)."""
        return iter(self.own)

    def __len__(self) -> int:
        return len(self.own)


def not_kept(run: Any) -> Iterable[tuple[str, Any]]:
    """(anchor, hub record) of the hub's entries this run did not find unchanged."""
    ours, kept = run.index.ours, run.kept
    if isinstance(ours, DiskMap) and isinstance(kept, DiskMap | DiskSet | DiskSubset):
        return ours.pairs(without=[kept])
    return ((a, r) for a, r in ours.items() if a not in kept)
