"""``dirsync import``: apply an LDIF file of content or change records.

The whole file is read and checked before anything is sent (syntax, and
attribute types against the server's schema), so malformed input changes
nothing. Adds are sent parents-first even when the file lists a child
before its parent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dirsync.directories.base import ApplyResult, Directory
from dirsync.directories.gcpause import paused_gc
from dirsync.entry import Entry, normalize_dn, parent_dn
from dirsync.errors import DirectoryError, EntryError, InputError
from dirsync.ldif.changes import Change, modify_ops
from dirsync.ldif.io import LDIFReader
from dirsync.ldif.urlvalues import URLValues
from dirsync.schema import base_type

log = logging.getLogger("dirsync.import")


@dataclass
class ImportOutcome:
    applied: int = 0
    failures: list[EntryError] = field(default_factory=list)
    skipped: int = 0  # records not attempted after a failure (or a lost connection)
    #: Records sent whose result never came back: the connection was lost
    #: first, so the server may or may not have applied them.
    unconfirmed: int = 0
    #: The connection-level problem that stopped the run, if any.
    stopped: DirectoryError | None = None

    @property
    def exit_status(self) -> int:
        if self.stopped is not None:
            # Exit 2 promises that nothing changed: only when that is so.
            if self.applied or self.unconfirmed:
                return 1
            return self.stopped.exit_status
        return 1 if self.failures else 0


def load_changes(path: str | Path, url_values: URLValues | None = None) -> list[Change]:
    """Every record of the file as a change record (content records are adds)."""
    with LDIFReader(path, url_values=url_values) as reader, paused_gc():
        # The parsed lists are the reader's own: no copy (as add_change makes).
        return [Change("add", r.dn, attrs=r.attrs, line=r.line) if isinstance(r, Entry) else r
                for r in reader]


def check_attribute_types(changes: list[Change], known: set[str], path: str) -> None:
    """Refuse the file if any record names an attribute type the server lacks."""
    seen: set[str] = set()  # attribute descriptions already found known
    for change in changes:
        names: list[str] = []
        if change.attrs:
            names = list(change.attrs)
        names += [m.attr for m in change.mods]
        for name in names:
            if name in seen:
                continue
            if base_type(name) in known:
                seen.add(name)
            else:
                raise InputError(f"unknown attribute type {name!r} (not in the server's schema)",
                                 path=path, line=change.line, field=name)


def parents_first(changes: list[Change]) -> Iterator[Change]:
    """The changes in file order, except that an add whose parent is added
    later in the file waits until that parent's add has been sent."""
    pending = {normalize_dn(c.dn) for c in changes if c.kind == "add"}
    waiting: dict[str, list[Change]] = {}

    def release(change: Change) -> Iterator[Change]:
        stack = [change]
        while stack:
            current = stack.pop()
            yield current
            if current.kind == "add":
                key = normalize_dn(current.dn)
                pending.discard(key)
                stack.extend(reversed(waiting.pop(key, [])))

    for change in changes:
        if change.kind == "add":
            parent = normalize_dn(parent_dn(change.dn))
            if parent in pending:
                waiting.setdefault(parent, []).append(change)
                continue
        yield from release(change)
    for group in waiting.values():  # parents never added: let the server refuse them
        yield from group


def adds_to_updates(changes: Iterator[Change], directory: Directory) -> Iterator[Change]:
    """``--update``: an add of an entry that exists becomes a modify of the
    attributes the record names (others on the entry are left alone)."""
    get = directory.get
    for change in changes:
        if change.kind != "add":
            yield change
            continue
        current = get(change.dn)
        if current is None:
            yield change
            continue
        wanted = Entry(change.dn, change.attrs or {})
        ops = modify_ops(current, wanted, only={n.lower() for n in wanted.names()})
        if ops:
            yield Change("modify", change.dn, mods=ops, line=change.line,
                         controls=change.controls)


def run_import(directory: Directory, path: str | Path, *, dry_run: bool = False,
               continue_on_error: bool = False, update: bool = False,
               on_result: Callable[[ApplyResult], None] | None = None,
               on_plan: Callable[[Change], None] | None = None,
               url_values: URLValues | None = None) -> ImportOutcome:
    changes = load_changes(path, url_values)
    known = directory.attribute_types() if hasattr(directory, "attribute_types") else None
    if known:
        check_attribute_types(changes, known, str(path))
    ordered: Iterator[Change] = parents_first(changes)
    outcome = ImportOutcome()
    if dry_run:
        for change in ordered:
            if on_plan:
                on_plan(change)
        return outcome
    if update:
        ordered = adds_to_updates(ordered, directory)
    try:
        for result in directory.apply(ordered, stop_on_error=not continue_on_error):
            if result.ok:
                outcome.applied += 1
            elif result.unknown:
                # Sent, then the connection was lost before the answer.
                outcome.unconfirmed += 1
            else:
                assert result.error is not None
                outcome.failures.append(result.error)
            if on_result:
                on_result(result)
    except DirectoryError as exc:
        # The connection, not a record, failed: say what was applied.
        outcome.stopped = exc
    if outcome.stopped is not None or (outcome.failures and not continue_on_error):
        outcome.skipped = max(0, len(changes) - outcome.applied - len(outcome.failures)
                              - outcome.unconfirmed)
    flush = getattr(directory, "flush", None)
    if flush:
        flush()
    return outcome
