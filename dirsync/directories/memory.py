"""An in-memory store of entries with LDAP's rules, behind the file kinds.

File directories (LDIF, CSV) are small next to a server: they are read
whole, changed here with the same refusals a server gives (entry exists, no
such object, not allowed on a non-leaf), and written back atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from dirsync.directories.base import ApplyResult, ReadOptions
from dirsync.entry import Entry, is_under, normalize_dn, parent_dn, rebase_dn
from dirsync.errors import EntryError
from dirsync.ldif.changes import Change, renamed_entry
from dirsync.schema import matcher

log = logging.getLogger("dirsync.file")


class MemoryStore:
    """Entries by normalized DN, in insertion order."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        #: normalized DN -> how many entries are right below it (a delete asks)
        self._children: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, dn: str) -> Entry | None:
        return self.entries.get(normalize_dn(dn))

    def put(self, entry: Entry) -> None:
        key = normalize_dn(entry.dn)
        if key not in self.entries:
            parent = normalize_dn(parent_dn(entry.dn))
            self._children[parent] = self._children.get(parent, 0) + 1
        self.entries[key] = entry

    def _drop(self, dn: str) -> None:
        del self.entries[normalize_dn(dn)]
        self._uncount(dn)

    def _uncount(self, dn: str) -> None:
        """One child fewer below the parent of ``dn``, which is gone."""
        parent = normalize_dn(parent_dn(dn))
        left = self._children.get(parent, 0) - 1
        if left > 0:
            self._children[parent] = left
        else:
            self._children.pop(parent, None)

    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        opts = options or ReadOptions()
        base_key = normalize_dn(opts.base) if opts.base else None
        for key, entry in list(self.entries.items()):
            if opts.base:
                if opts.scope == "base" and key != base_key:
                    continue
                if opts.scope == "one" and normalize_dn(parent_dn(entry.dn)) != base_key:
                    continue
                if opts.scope in ("sub", None) and not is_under(entry.dn, opts.base):
                    continue
            yield entry

    def _has_children(self, dn: str) -> bool:
        return self._children.get(normalize_dn(dn), 0) > 0

    def _need_parent(self, dn: str) -> None:
        parent = parent_dn(dn)
        # Top-level entries (no parent in the file) are allowed: a file holds
        # one or more naming contexts.
        if parent and self.entries and self.get(parent) is None and any(
                is_under(parent, e.dn) for e in self.entries.values()):
            raise EntryError(dn, "no such object: the parent entry does not exist",
                             result="noSuchObject")

    def add_entry(self, entry: Entry) -> None:
        """Add ``entry`` itself (a file's content record: no change to build and
        copy), as an add change would: or raise :class:`EntryError`."""
        if not entry.attrs:
            raise EntryError(entry.dn, "no attributes provided", result="protocolError")
        if self.get(entry.dn) is not None:
            raise EntryError(entry.dn, "entry already exists", result="entryAlreadyExists")
        self._need_parent(entry.dn)
        self.put(entry)

    def apply_one(self, change: Change) -> None:
        """Apply one change or raise :class:`EntryError` with an LDAP result name."""
        dn = change.dn
        if change.kind == "add":
            self.add_entry(Entry(dn, change.attrs or {}, change.line))  # an LDIF file's line
            return
        current = self.get(dn)
        if current is None:
            raise EntryError(dn, "no such object", result="noSuchObject")
        if change.kind == "delete":
            if self._has_children(dn):
                raise EntryError(dn, "not allowed on non-leaf", result="notAllowedOnNonLeaf")
            self._drop(current.dn)
        elif change.kind == "modify":
            updated = current.copy()
            for mod in change.mods:
                self._modify(updated, mod.op, mod.attr, mod.values)
            self.put(updated)
        else:
            self._rename(current, change)

    def _modify(self, entry: Entry, op: str, attr: str, values: list[bytes]) -> None:
        norm = matcher(attr)
        have = entry.get(attr)
        if op == "add":
            known = {norm(v) for v in have}
            if any(norm(v) in known for v in values):
                raise EntryError(entry.dn, f"{attr}: value already exists",
                                 result="attributeOrValueExists")
            entry.set(attr, have + list(values))
        elif op == "delete":
            if not values:
                if not have:
                    raise EntryError(entry.dn, f"{attr}: no such attribute",
                                     result="noSuchAttribute")
                entry.remove(attr)
                return
            gone = {norm(v) for v in values}
            if not gone <= {norm(v) for v in have}:
                raise EntryError(entry.dn, f"{attr}: no such value", result="noSuchAttribute")
            entry.set(attr, [v for v in have if norm(v) not in gone])
        elif op == "replace":
            entry.set(attr, values)
        else:  # increment
            if not have:
                raise EntryError(entry.dn, f"{attr}: no such attribute", result="noSuchAttribute")
            step = int(values[0]) if values else 1
            entry.set(attr, [str(int(have[0]) + step).encode()])

    def _rename(self, entry: Entry, change: Change) -> None:
        new_dn = change.target_dn
        if self.get(new_dn) is not None and normalize_dn(new_dn) != normalize_dn(entry.dn):
            raise EntryError(entry.dn, f"{new_dn} already exists", result="entryAlreadyExists")
        if change.newsuperior is not None:
            self._need_parent(new_dn)
        old_dn = entry.dn
        moved = renamed_entry(entry, new_dn, change.deleteoldrdn)
        rebuilt: dict[str, Entry] = {}
        for key, item in self.entries.items():
            if item is entry:
                rebuilt[normalize_dn(new_dn)] = moved
            elif is_under(item.dn, old_dn):
                # A subtree rename carries the children along.
                child = item.copy()
                child.dn = rebase_dn(item.dn, old_dn, new_dn)
                rebuilt[normalize_dn(child.dn)] = child
            else:
                rebuilt[key] = item
        self.entries = rebuilt
        self._children = {}
        for item in rebuilt.values():
            parent = normalize_dn(parent_dn(item.dn))
            self._children[parent] = self._children.get(parent, 0) + 1

    def apply(self, changes: Iterable[Change], stop_on_error: bool) -> Iterator[ApplyResult]:
        for change in changes:
            try:
                _without_controls(change)
                self.apply_one(change)
            except EntryError as exc:
                exc.line = change.line
                yield ApplyResult(change, exc)
                if stop_on_error:
                    return
                continue
            yield ApplyResult(change)


def _without_controls(change: Change) -> None:
    """A file has no server to pass a record's controls on to: a critical
    one fails the record (as a server that does not know it would, RFC 4511
    section 4.1.11), one that is not critical is left out with a warning."""
    for control in change.controls:
        where = f"line {change.line}: " if change.line is not None else ""
        if control.critical:
            raise EntryError(change.dn, f"critical control {control.oid} cannot be passed on "
                             "to a file directory", result="unavailableCriticalExtension")
        log.warning("%s%s: control %s is not passed on to a file directory (not critical: "
                    "applied without it)", where, change.dn, control.oid)


class StoreBacked:
    """What a file kind does through its in-memory :class:`MemoryStore`:
    look entries up and apply changes, noting that the file must be written."""

    _dirty: bool

    @property
    def store(self) -> MemoryStore:  # pragma: no cover - provided by the kind
        raise NotImplementedError

    def exists(self, dn: str) -> bool:
        return self.store.get(dn) is not None

    def get(self, dn: str) -> Entry | None:
        return self.store.get(dn)

    def apply(self, changes: Iterable[Change], *,
              stop_on_error: bool = True) -> Iterator[ApplyResult]:
        for result in self.store.apply(changes, stop_on_error):
            if result.ok:
                self._dirty = True
            yield result


def write_atomically(path: Path, write: Callable[[IO[str]], None], *,
                     newline: str = "\n") -> None:
    """Write through a temp file in the same folder, fsync, rename over ``path``.

    A reader sees the old file or the new one, never half of either.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
