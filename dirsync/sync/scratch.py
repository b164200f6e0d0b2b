"""A run's per-entry bookkeeping on disk, so that its memory stays flat.

A run of a million entries would hold a million Python objects in each of
its indexes (the hub's entries by anchor, the anchors seen in the source,
the entries found unchanged, the DNs given out ...), about a kilobyte per
entry in all. Here they live in tables of one private temporary SQLite
database instead (a file SQLite deletes when it is closed, or when the
process dies; only a few megabytes of its pages are cached), behind the
mapping and set interfaces the run used before.

Writes wait in a small buffer and go in a batch; reads that a run makes
entry by entry are made cheap by :meth:`DiskMap.prefetch`, which asks for the
keys of a few dozen entries read ahead in one query; a set has a Bloom
filter in front of it, so that a key never added costs no query. Iteration
is in key order (the table's primary key), so two tables can be merged
without sorting.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Callable, Iterable, Iterator, MutableMapping, MutableSet
from itertools import chain
from typing import Any, Generic, TypeVar, cast

from dirsync.directories.bloom import BITS, Bloom
from dirsync.entry import Entry
from dirsync.sync.entryspool import entry_from_record, entry_record

V = TypeVar("V")

#: Pages SQLite keeps in memory per scratch database, in KiB: few while the
#: tables are a change's (what a run holds here grows with its change up to
#: this bound: 8 MiB made a 1% change of 100,000 entries peak 10 MB higher),
#: more once a table passes :data:`LARGE_TABLE` writes (with 2 MiB, a first
#: sync of a million rows spent 3% more CPU finding its tables' pages).
CACHE_KIB = 2048
LARGE_CACHE_KIB = 8192
LARGE_TABLE = 1 << 16
#: Buffered writes per table before they go to the database (in key order).
#: A run has a few dozen tables: each holds up to this many pairs as objects.
FLUSH = 1024
#: Buffered writes of an entries table (:meth:`Scratch.entries`).
ENTRY_FLUSH = 128
#: Keys per ``IN (...)`` query (below SQLite's oldest parameter limit of 999).
CHUNK = 500
#: log2 of the bits of a table's first Bloom filter (8 KiB, for 8,192 keys); it
#: is made again eight times larger each time it fills, up to 1 MiB. A run
#: has a dozen filtered tables, most of them holding a change's few keys.
FIRST_BLOOM = 16

_MISSING = object()


class Scratch:
    """One private temporary database; its tables are made by :meth:`map` and :meth:`set`."""

    def __init__(self) -> None:
        # "" is SQLite's private temporary file: nobody else can open it.
        self.db = sqlite3.connect("", isolation_level=None)
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA temp_store=FILE")
        # One transaction for the life of the run: nothing here must survive it.
        self.db.execute("BEGIN")
        self._count = 0
        self.tables: list[DiskMap[Any]] = []
        self.large = False

    def grown(self) -> None:
        """A table passed :data:`LARGE_TABLE` writes: a full run's, not a change's."""
        if not self.large:
            self.large = True
            self.db.execute(f"PRAGMA cache_size=-{LARGE_CACHE_KIB}")

    def new_table(self) -> str:
        self._count += 1
        name = f"t{self._count}"
        self.db.execute(f"CREATE TABLE {name} (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
        return name

    def map(self, encode: Callable[[Any], Any] = lambda v: v,
            decode: Callable[[Any], Any] = lambda v: v, flush: int = FLUSH) -> DiskMap[Any]:
        """A new key -> value table (values stored as ``marshal(encode(value))``;
        ``flush`` writes wait in memory before they go in a batch)."""
        found: DiskMap[Any] = DiskMap(self, encode, decode, flush)
        self.tables.append(found)
        return found

    def entries(self) -> DiskMap[Entry]:
        """A new key -> :class:`Entry` table, with a Bloom filter in front.

        An entry is kilobytes: few wait to be written, and a lookup gives a
        new copy (a change to it is not stored)."""
        table: DiskMap[Entry] = self.map(entry_record, entry_from_record, flush=ENTRY_FLUSH)
        return table.filtered()

    def set(self) -> DiskSet:
        """A new set; a Bloom filter in front of it answers most misses without a query."""
        return DiskSet(self.map().filtered())

    def sorted_keys(self, *tables: Keyed) -> Iterator[str]:
        """The keys of all these tables, once each, in order."""
        parts, params = [], []
        for table in tables:
            sql, args = key_query(table)
            parts.append(sql)
            params.extend(args)
        for (key,) in self.db.execute(f"{' UNION '.join(parts)} ORDER BY 1", params):
            yield key

    def close(self) -> None:
        self.tables = []
        self.db.close()


class LookedUp(MutableMapping[str, V], Generic[V]):
    """A mapping whose every lookup is its ``get`` (one query, or none), which
    the subclass defines: indexing and ``in`` ask it too."""

    def __getitem__(self, key: str) -> V:
        found = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return cast(V, found)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING


class DiskMap(LookedUp[V]):
    """A str -> value mapping in a scratch table."""

    def __init__(self, scratch: Scratch, encode: Callable[[V], Any],
                 decode: Callable[[Any], V], flush: int = FLUSH) -> None:
        self.scratch = scratch
        self.flush_at = flush
        self.db = scratch.db
        self.name = scratch.new_table()
        self.encode = encode
        self.decode = decode
        self._pending: dict[str, V] = {}
        self._firsts: list[tuple[str, V]] = []
        self._cache: dict[str, Any] = {}
        #: (key, value, value already there) of :meth:`put_first` calls that lost.
        self.taken: list[tuple[str, V, V]] = []
        #: Every key written, if set (:meth:`filtered`): a key it surely lacks
        #: is not looked up.
        self.bloom: Bloom | None = None
        self._room = 0          # keys the filter takes before it is made larger
        self.written = 0        # writes flushed (a key written twice counts twice)

    def filtered(self, width: int = FIRST_BLOOM) -> DiskMap[V]:
        """This table, empty, with a Bloom filter in front of it (of ``2**width``
        bits at first)."""
        self.bloom = Bloom(width)
        self._room = self.bloom.capacity()
        return self

    def _filter(self, key: str) -> None:
        assert self.bloom is not None
        self.bloom.add(key)
        self._room -= 1
        if self._room < 0 and self.bloom.width < BITS:
            # Full: made again from every key written, eight times larger
            # (``key`` is not in the buffers yet).
            bloom = Bloom(min(self.bloom.width + 3, BITS))
            added = 0
            # (Streamed: the table may hold half a million keys.)
            for written in chain((key,), self._pending, (k for k, _ in self._firsts),
                                 (k for (k,) in self.db.execute(f"SELECT key FROM {self.name}"))):
                bloom.add(written)
                added += 1
            self.bloom = bloom
            self._room = bloom.capacity() - added

    # -- writing -------------------------------------------------------------
    def __setitem__(self, key: str, value: V) -> None:
        self._cache.pop(key, None)
        if self.bloom is not None:
            self._filter(key)
        self._pending[key] = value
        if len(self._pending) >= self.flush_at:
            self.flush()

    def put_first(self, key: str, value: V) -> None:
        """Store ``value`` unless ``key`` has one already; a key taken
        before is noted in :attr:`taken` (when the buffer is flushed)."""
        self._cache.pop(key, None)
        if self.bloom is not None:
            self._filter(key)
        self._firsts.append((key, value))
        if len(self._firsts) >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        self.written += len(self._pending) + len(self._firsts)
        if self.written > LARGE_TABLE:
            self.scratch.grown()
        if self._pending:
            dumps, encode = marshal.dumps, self.encode
            # In key order: the B-tree's pages are visited once each, in turn.
            self.db.executemany(f"INSERT OR REPLACE INTO {self.name} VALUES (?, ?)",
                                [(k, dumps(encode(v))) for k, v in sorted(self._pending.items())])
            self._pending.clear()
        if self._firsts:
            firsts, self._firsts = self._firsts, []
            dumps, encode = marshal.dumps, self.encode
            rows = [(k, dumps(encode(v))) for k, v in firsts]
            before = self.db.total_changes
            self.db.executemany(f"INSERT OR IGNORE INTO {self.name} VALUES (?, ?)", rows)
            if self.db.total_changes - before < len(rows):
                # Some key was there already (rare): say which values lost.
                for (key, value), (_, data) in zip(firsts, rows, strict=True):
                    held = self.db.execute(f"SELECT value FROM {self.name} WHERE key=?",
                                           (key,)).fetchone()[0]
                    if held != data:
                        self.taken.append((key, value, self.decode(marshal.loads(held))))

    def __delitem__(self, key: str) -> None:
        self.flush()
        self._cache.pop(key, None)
        cursor = self.db.execute(f"DELETE FROM {self.name} WHERE key=?", (key,))
        if cursor.rowcount == 0:
            raise KeyError(key)

    # -- reading -------------------------------------------------------------
    def prefetch(self, keys: Iterable[str]) -> None:
        """Look these keys up in a few queries; :meth:`get` then answers from memory."""
        self.flush()
        bloom = self.bloom
        wanted = list(dict.fromkeys(keys if bloom is None else filter(bloom.maybe, keys)))
        cache: dict[str, Any] = dict.fromkeys(keys, _MISSING)
        loads, decode = marshal.loads, self.decode
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start:start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, data in self.db.execute(
                    f"SELECT key, value FROM {self.name} WHERE key IN ({marks})", chunk):
                cache[key] = decode(loads(data))
        self._cache = cache

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._pending:
            return self._pending[key]
        if key in self._cache:
            found = self._cache[key]
            return default if found is _MISSING else found
        if self.bloom is not None and not self.bloom.maybe(key):
            return default
        if self._firsts:
            self.flush()
        row = self.db.execute(f"SELECT value FROM {self.name} WHERE key=?", (key,)).fetchone()
        return default if row is None else self.decode(marshal.loads(row[0]))

    def __contains__(self, key: object) -> bool:
        """As ``get``, without reading the value."""
        if not isinstance(key, str):
            return False
        if key in self._pending:
            return True
        if key in self._cache:
            return self._cache[key] is not _MISSING
        if self.bloom is not None and not self.bloom.maybe(key):
            return False
        if self._firsts:
            self.flush()
        return self.db.execute(f"SELECT 1 FROM {self.name} WHERE key=?",
                               (key,)).fetchone() is not None

    def __len__(self) -> int:
        self.flush()
        return int(self.db.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0])

    def __bool__(self) -> bool:
        if self._pending or self._firsts:
            return True
        return self.db.execute(f"SELECT 1 FROM {self.name} LIMIT 1").fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        """The keys in order. The table must not change while it is iterated."""
        self.flush()
        for (key,) in self.db.execute(f"SELECT key FROM {self.name} ORDER BY key"):
            yield key

    def pairs(self, without: Iterable[Keyed] = ()) -> Iterator[tuple[str, V]]:
        """(key, value) in key order, leaving out keys that any of ``without`` holds."""
        self.flush()
        where, params = "", []
        for other in without:
            sql, args = key_query(other)
            # Correlated, so that each row is one look-up by primary key.
            name, _, condition = sql.removeprefix("SELECT key FROM ").partition(" WHERE ")
            where += (" AND" if where else " WHERE") + \
                f" NOT EXISTS (SELECT 1 FROM {name} o WHERE o.key = t.key" + \
                (f" AND o.{condition})" if condition else ")")
            params.extend(args)
        loads, decode = marshal.loads, self.decode
        for key, data in self.db.execute(
                f"SELECT key, value FROM {self.name} t{where} ORDER BY key", params):
            yield key, decode(loads(data))


class DiskSet(MutableSet[str]):
    """A set of strings in a scratch table."""

    def __init__(self, table: DiskMap[Any]) -> None:
        self.table = table

    def add(self, value: str) -> None:
        self.table[value] = None

    def discard(self, value: str) -> None:
        self.table.pop(value, None)

    def prefetch(self, keys: Iterable[str]) -> None:
        self.table.prefetch(keys)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.table.get(value, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def update(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)


class DiskSubset(MutableSet[str]):
    """The keys of a table whose value is ``mark``: a set that shares the
    table's rows (marking a key written in the same batch costs no write)."""

    def __init__(self, table: DiskMap[Any], mark: int) -> None:
        self.table = table
        self.mark = mark

    def add(self, value: str) -> None:
        """Mark ``value`` (adding it to the table if it is not there)."""
        self.table[value] = self.mark

    def discard(self, value: str) -> None:
        """Unmark ``value``; the table keeps its key."""
        if value in self:
            self.table[value] = None

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.table.get(value) == self.mark

    def __len__(self) -> int:
        sql, args = key_query(self)
        return int(self.table.db.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0])

    def __iter__(self) -> Iterator[str]:
        sql, args = key_query(self)
        for (key,) in self.table.db.execute(f"{sql} ORDER BY key", args):
            yield key


Keyed = DiskMap[Any] | DiskSet | DiskSubset


def key_query(source: Keyed) -> tuple[str, list[Any]]:
    """SQL that selects the keys of a table, a set or a subset (flushed first)."""
    if isinstance(source, DiskSubset):
        source.table.flush()
        return (f"SELECT key FROM {source.table.name} WHERE value = ?",
                [marshal.dumps(source.table.encode(source.mark))])
    table = source.table if isinstance(source, DiskSet) else source
    table.flush()
    return f"SELECT key FROM {table.name}", []


def pairs(mapping: Any) -> Iterable[tuple[str, Any]]:
    """(key, value) of a mapping: streamed from a :class:`DiskMap`, else its items."""
    if isinstance(mapping, DiskMap):
        return mapping.pairs()
    items: Iterable[tuple[str, Any]] = mapping.items()
    return items


def prefetch(collection: Any, keys: list[str]) -> None:
    """Warm a table's cache for ``keys``; nothing for an ordinary dict or set."""
    warm = getattr(collection, "prefetch", None)
    if warm is not None:
        warm(keys)


def disk_order(scratch: Scratch
               ) -> Callable[[Iterable[tuple[str, Any]]], Iterator[tuple[str, Any]]]:
    """A sort of (key, value) pairs by key (keys unique) in a new table of
    ``scratch``: all are taken before the first is given."""
    def order(items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        table: DiskMap[Any] = scratch.map()
        for key, value in items:
            table[key] = value
        yield from table.pairs()
    return order
