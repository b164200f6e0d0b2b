"""External sort of entry streams by a hierarchical DN key.

The key of a DN is its normalized RDNs from the top down, joined by NUL:
``cn=a,ou=b,dc=x`` becomes ``dc=x\\0ou=b\\0cn=a``. Compared as strings,
a parent sorts right before its subtree and siblings by normalized RDN, so
two files in this order can be merge-joined, and a stream in this order
adds parents before children.

Sorting spills: records are collected into runs of bounded size, each run
is sorted in memory and written to a temp file, and the runs are merged
with a heap. An input that is already in order becomes one run written as
it is read, without buffering; only from the first record out of order on
are records buffered. Memory is bounded by the run size whatever the input.

A record is a tuple ``(key, seq, dn, payload, extra, meta)``: ``seq`` is the
record's line in its file (unique within one input, so ties never compare
the payload), ``payload`` is opaque bytes. Only the first two fields are
ever compared.
"""

from __future__ import annotations

import heapq
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import ldap.dn

from dirsync.entry import Entry

SEP = "\x00"

Record = tuple[str, int, str, bytes, Any, Any]

#: Default bytes of payload per in-memory run (Python objects roughly
#: double it): a 1,000,000-entry file makes about ten runs.
DEFAULT_RUN_BYTES = 64 << 20
#: Runs merged at once; more are merged in rounds (open files stay bounded).
FAN_IN = 64
_BATCH = 512  # records per pickle.dump in a run file: fewer calls, same order

# An RDN with nothing to escape or fold but case: ``uid=u0001``, ``cn=Ted
# Bremer``. Its normal form is simply lower-case type and case-folded value.
_SPECIAL = frozenset('\\"+,;<>=#\x00')


def _plain_rdn(rdn: str) -> str | None:
    eq = rdn.find("=")
    if eq <= 0:
        return None
    attr, value = rdn[:eq], rdn[eq + 1:]
    if (not value or value[0] == " " or value[-1] == " " or not attr.isascii()
            or not attr.replace("-", "").isalnum() or not _SPECIAL.isdisjoint(value)):
        return None
    return f"{attr.lower()}={value.casefold()}"


def _norm_rdns(dn: str) -> list[str]:
    """Normalized RDNs of ``dn``, bottom up (RFC 4514 parse)."""
    try:
        parts = ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR as exc:
        raise ValueError(f"not a valid DN: {dn!r}") from exc
    out = []
    for rdn in parts:
        text = ldap.dn.dn2str([sorted((t.lower(), v.casefold(), 1) for t, v, _ in rdn)])
        # dn2str leaves NUL as backslash-NUL; NUL is our separator.
        out.append(text.replace("\x00", "\\00"))
    return out


class DnKeys:
    """Hierarchical sort keys, with the keys of parent DNs cached.

    Entries share few parents (``ou=People,dc=example,dc=org``), so the
    parent part of a key is nearly always a dictionary hit and only the
    entry's own RDN is normalized.
    """

    def __init__(self, cache_size: int = 1 << 14) -> None:
        self._parents: dict[str, str] = {}
        self._cache_size = cache_size

    def key(self, dn: str) -> str:
        if not dn:
            return ""
        comma = dn.find(",")
        if comma < 0 or "\\" in dn or '"' in dn:
            return self._slow(dn)
        rdn, parent = dn[:comma], dn[comma + 1:]
        own = _plain_rdn(rdn)
        if own is None:
            return self._slow(dn)
        top = self._parents.get(parent)
        if top is None:
            top = self._slow(parent)
            if len(self._parents) >= self._cache_size:
                self._parents.clear()
            self._parents[parent] = top
        return top + SEP + own

    def _slow(self, dn: str) -> str:
        return SEP.join(reversed(_norm_rdns(dn)))


def dn_key(dn: str) -> str:
    """The hierarchical sort key of one DN (see :class:`DnKeys` for many)."""
    return DnKeys().key(dn)


def depth(key: str) -> int:
    return key.count(SEP) + 1 if key else 0


def parent_key(key: str) -> str:
    cut = key.rfind(SEP)
    return key[:cut] if cut >= 0 else ""


def is_below(key: str, ancestor: str) -> bool:
    """True when ``key`` is strictly inside the subtree of ``ancestor``."""
    return key.startswith(ancestor + SEP) if ancestor else bool(key)


# -- runs ----------------------------------------------------------------

class _RunWriter:
    """Appends records to one run file, a batch per pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Open across add() calls: runs are filled record by record.
        self._out = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
        self._batch: list[Record] = []

    def add(self, record: Record) -> None:
        self._batch.append(record)
        if len(self._batch) >= _BATCH:
            pickle.dump(self._batch, self._out, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch = []

    def close(self) -> None:
        if self._batch:
            pickle.dump(self._batch, self._out, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch = []
        self._out.close()


def _write_run(path: Path, records: Iterable[Record]) -> None:
    writer = _RunWriter(path)
    try:
        for record in records:
            writer.add(record)
    finally:
        writer.close()


def _read_run(path: Path) -> Iterator[Record]:
    with open(path, "rb", buffering=1 << 20) as stream:
        while True:
            # A fresh unpickler per batch: each batch was pickled with its own
            # memo, and protocol 4+ numbers memo entries from the memo's size.
            try:
                batch = pickle.load(stream)
            except EOFError:
                return
            yield from batch


class SortedRuns:
    """Records spilled to sorted runs in ``workdir``; iterate to merge them.

    Feed it with :meth:`add` and :meth:`close` (or :meth:`fill`).
    ``in_order`` tells whether the input came already sorted (one run,
    nothing buffered). Iterating may be repeated; the files stay until
    ``workdir`` goes.
    """

    def __init__(self, workdir: str | os.PathLike[str], prefix: str = "run",
                 run_bytes: int = DEFAULT_RUN_BYTES) -> None:
        self.workdir = Path(workdir)
        self.prefix = prefix
        self.run_bytes = max(1, run_bytes)
        self.runs: list[Path] = []
        self.count = 0
        self.in_order = True
        self._last: str | None = None
        self._first: _RunWriter | None = None
        self._buffer: list[Record] = []
        self._size = 0

    def _new_path(self) -> Path:
        return self.workdir / f"{self.prefix}-{len(self.runs):05d}"

    def add(self, record: Record) -> None:
        self.count += 1
        if self.in_order:
            # The sorted prefix of the input goes straight to the first run.
            if self._last is None or record[0] >= self._last:
                if self._first is None:
                    self._first = _RunWriter(self._new_path())
                    self.runs.append(self._first.path)
                self._first.add(record)
                self._last = record[0]
                return
            self.in_order = False
            if self._first is not None:
                self._first.close()
        self._buffer.append(record)
        self._size += len(record[3]) + len(record[2]) + 2 * len(record[0]) + 100
        if self._size >= self.run_bytes:
            self._flush()

    def close(self) -> SortedRuns:
        if self._first is not None and self.in_order:
            self._first.close()
        if self._buffer:
            self._flush()
        return self

    def fill(self, records: Iterable[Record]) -> SortedRuns:
        """Consume ``records`` into runs."""
        try:
            for record in records:
                self.add(record)
        finally:
            self.close()
        return self

    def _flush(self) -> None:
        self._buffer.sort(key=_order)
        path = self._new_path()
        _write_run(path, self._buffer)
        self.runs.append(path)
        self._buffer, self._size = [], 0

    def __iter__(self) -> Iterator[Record]:
        level = 0
        while len(self.runs) > FAN_IN:
            # Merge in rounds so no more than FAN_IN files are open at once.
            merged = []
            for start in range(0, len(self.runs), FAN_IN):
                path = self.workdir / f"{self.prefix}-m{level}-{start:05d}"
                _write_run(path, merge_sorted(self.runs[start:start + FAN_IN]))
                merged.append(path)
            for path in self.runs:
                path.unlink()
            self.runs, level = merged, level + 1
        return merge_sorted(self.runs)


def _order(record: Record) -> tuple[str, int]:
    return record[0], record[1]


def merge_sorted(paths: list[Path]) -> Iterator[Record]:
    if not paths:
        return iter(())
    if len(paths) == 1:
        return _read_run(paths[0])
    # Plain tuple order: keys first, then seq, which is unique per input, so
    # the payloads are never compared (and no key function slows the heap).
    return heapq.merge(*(_read_run(p) for p in paths))


def sort_records(records: Iterable[Record], workdir: str | os.PathLike[str], *,
                 prefix: str = "run", run_bytes: int = DEFAULT_RUN_BYTES) -> SortedRuns:
    return SortedRuns(workdir, prefix, run_bytes).fill(records)


# -- entries -------------------------------------------------------------

def sort_entries(entries: Iterable[Entry], key: Callable[[str], str] | None = None, *,
                 run_bytes: int = DEFAULT_RUN_BYTES,
                 tmpdir: str | None = None) -> Iterator[Entry]:
    """``entries`` in order of ``key(dn)`` (default: the hierarchical key),
    sorted in bounded memory through temp files removed at the end."""
    keyfn = key or DnKeys().key
    with tempfile.TemporaryDirectory(prefix="dirsync-sort-", dir=tmpdir) as work:
        def records() -> Iterator[Record]:
            for seq, entry in enumerate(entries):
                payload = pickle.dumps(entry.attrs, protocol=pickle.HIGHEST_PROTOCOL)
                yield keyfn(entry.dn), seq, entry.dn, payload, entry.line, None

        runs = sort_records(records(), work, run_bytes=run_bytes)
        for _, _, dn, payload, line, _ in runs:
            yield Entry(dn, pickle.loads(payload), line)


def sort_ldif(source: str | os.PathLike[str], out: Any, *,
              run_bytes: int = DEFAULT_RUN_BYTES, tmpdir: str | None = None) -> int:
    """Write the content records of LDIF file ``source`` to text stream
    ``out`` in hierarchical DN order; returns how many were written."""
    from dirsync.errors import InputError
    from dirsync.ldif.io import LDIFReader, LDIFWriter

    def entries(reader: LDIFReader) -> Iterator[Entry]:
        for record in reader:
            if not isinstance(record, Entry):
                raise InputError("a change record: only content records can be sorted",
                                 path=reader.name, line=record.line)
            yield record

    writer = LDIFWriter(out)
    count = 0
    with LDIFReader(source) as reader:
        for entry in sort_entries(entries(reader), run_bytes=run_bytes, tmpdir=tmpdir):
            writer.entry(entry)
            count += 1
    return count


class ReverseSpool:
    """Items kept on disk in chunks and given back last-in first-out.

    A merge in hierarchical order meets a deleted subtree parent first; the
    deletes must go out children first. Reading the spool backwards turns
    ascending key order into descending order, children before parents,
    with at most one chunk in memory.
    """

    def __init__(self, workdir: str | os.PathLike[str], name: str = "spool",
                 chunk: int = 4096) -> None:
        self.path = Path(workdir) / name
        self.chunk = max(1, chunk)
        self._items: list[Any] = []
        self._offsets: list[int] = []
        self._out: Any = None
        self.count = 0

    def add(self, item: Any) -> None:
        self._items.append(item)
        self.count += 1
        if len(self._items) >= self.chunk:
            self._spill()

    def _spill(self) -> None:
        if self._out is None:
            self._out = open(self.path, "wb")  # noqa: SIM115 - stays open across add()
        self._offsets.append(self._out.tell())
        pickle.dump(self._items, self._out, protocol=pickle.HIGHEST_PROTOCOL)
        self._items = []

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    def __iter__(self) -> Iterator[Any]:
        yield from reversed(self._items)
        if self._out is None:
            return
        self.close()
        with open(self.path, "rb") as stream:
            for offset in reversed(self._offsets):
                stream.seek(offset)
                yield from reversed(pickle.load(stream))
