"""A source read whole or since a cursor: one feed per kind of source.

A run asks its source's feed for everything (:meth:`LDAPFeed.read_all`)
or for what changed since the stored cursors (:meth:`LDAPFeed.read_changes`,
which gives a :class:`Changes` or the reason a full read is needed). A feed
never stores a cursor: it says what its cursors become
(:attr:`Feed.pending`), and :class:`dirsync.sync.cursor.Cursor` stores them
when the run ends well (STYLE.md item 4).

The kinds:

- an LDAP directory with syncprov: an RFC 4533 refreshOnly search from the
  cookie of the last run (:class:`LDAPFeed`, ``syncrepl``);
- one without syncprov: a ``modifyTimestamp`` high-water mark, deletes
  found by comparing the surviving entryUUIDs with the map of those the
  last run read (:class:`LDAPFeed`, ``timestamp``);
- Active Directory: a DirSync cookie or a ``uSNChanged`` mark
  (:class:`dirsync.sync.adchanges.ADFeed`);
- a file: its fingerprint (size, mtime, content hash); a changed file is
  read whole (:class:`FileFeed`).

A feed reads one or more :class:`Stream`: the import reads its source as
one, the export reads each export container as one, each with its own
cursors (``syncrepl-cookie ou=people,dc=...``) and its own UUID map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from dirsync.directories import ReadOptions
from dirsync.directories.ldap import LDAPDirectory
from dirsync.directories.syncrepl import (
    RefreshRequired,
    read_by_uuids,
    read_changes,
    read_since_timestamp,
    supports_syncrepl,
)
from dirsync.entry import Entry, normalize_dn
from dirsync.state.fingerprints import FileFingerprint, check
from dirsync.sync.changestate import COOKIE, FILE, HIGH_WATER, ChangeState
from dirsync.sync.entryspool import EntrySpool
from dirsync.sync.spool import PairSpool

#: What a feed's full read gives a read entry as its anchor (uuid, entry -> anchor).
AnchorOf = Callable[[str, Entry], str]


class ChangedEntries(Protocol):
    """(UUID, entry) pairs read again: counted, and read as often as asked
    (a list, or a spool of entries waiting on disk)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[str, Entry]]: ...


@dataclass
class Changes:
    """What a source says changed since its cursors."""

    changed: ChangedEntries                 # (UUID, entry) read again
    deleted: set[str]                       # UUIDs gone
    known: dict[str, str]                   # UUID -> anchor the maps know, of those read


@dataclass
class Stream:
    """One search base a feed reads: its read options, cursors and UUID map."""

    options: ReadOptions
    map: ChangeState            # the UUIDs (-> anchors) it held at the last run
    container: str | None = None   # an export container; None: the import's source
    #: What this run read (UUID -> anchor; a full read's on disk past a few
    #: thousand) and found gone in it, for the map at the end.
    read: dict[str, str] | PairSpool = field(default_factory=PairSpool)
    gone: set[str] = field(default_factory=set)

    def cursor(self, name: str) -> str:
        """One cursor per export container: ``syncrepl-cookie ou=people,dc=...``."""
        return name if self.container is None else f"{name} {normalize_dn(self.container)}"

    def where(self, word: str) -> str:
        return "" if self.container is None else f" {word} {self.container}"


class Feed:
    """What every kind of feed has: its method, its streams and the cursors it
    would store."""

    method: str | None = None

    def __init__(self, streams: list[Stream] | None = None) -> None:
        self.streams = streams or []
        #: cursor name -> value (None forgets it), stored when the run ends well
        self.pending: dict[str, str | None] = {}

    def reset(self) -> None:
        """Forget what a change read found: a full read follows."""
        self.pending = {}
        self.close_reads()
        for stream in self.streams:
            stream.read = PairSpool()
            stream.gone = set()

    def close_reads(self) -> None:
        """Let go of what the streams read (a spool's file closes now)."""
        for stream in self.streams:
            if isinstance(stream.read, PairSpool):
                stream.read.close()

    def commit(self, full: bool, keep: set[str]) -> None:
        """The UUID maps after the run: exactly what a full run read, or updated
        by the changes (UUIDs in ``keep`` stay, to be read again)."""
        for stream in self.streams:
            if full:
                stream.map.replace(stream.read.items())
            else:
                stream.map.forget(stream.gone - keep)
                stream.map.remember(stream.read.items())


def ldap_method(directory: LDAPDirectory) -> str:
    """How an LDAP directory says what changed: syncrepl where syncprov runs."""
    return "syncrepl" if supports_syncrepl(directory) else "timestamp"


def file_feed(directory: object) -> FileFeed | None:
    """A feed for a directory that is a file (None for one that is not, or not yet)."""
    path = getattr(directory, "path", None)
    return FileFeed(path) if isinstance(path, Path) and path.exists() else None


class FileFeed(Feed):
    """A file: not read at all while its fingerprint is as recorded. One whose
    fingerprint moved is read whole, or, when the run gives it a ``differ``
    (:mod:`dirsync.sync.filediff`), compared with the state to say what changed."""

    method = "file"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.fingerprint: FileFingerprint | None = None
        #: What changed in the file since the state's rows, else why it must be read whole.
        self.differ: Callable[[], Changes | str] | None = None

    def changed(self, tracking: ChangeState) -> bool:
        changed, self.fingerprint = check(self.path,
                                          FileFingerprint.loads(tracking.cursor(FILE)))
        return changed

    def reset(self) -> None:
        """A full read of a file is a read of it: its fingerprint holds."""

    def finish(self, clean: bool) -> None:
        # A file read with errors keeps no fingerprint: the next run reads it again.
        self.pending[FILE] = self.fingerprint.dumps() if clean and self.fingerprint else None


class ChangeFeed(Feed):
    """A feed that can say what changed since its cursors (LDAP, AD)."""

    def read_changes(self, tracking: ChangeState) -> Changes | str:
        """What changed since the stored cursors; else why a full read is needed."""
        raise NotImplementedError

    def read_uuids(self, uuids: list[str]) -> dict[str, Entry]:
        """The entries with these UUIDs the source still selects."""
        raise NotImplementedError


class LDAPFeed(ChangeFeed):
    """An LDAP directory read with syncrepl, or above a modifyTimestamp mark.

    ``server`` names the directory in messages ("the server", "the hub").
    ``empty_mark`` is the mark of a stream whose full read found nothing.
    ``anchor_of`` says what an entry read is anchored by; without it the
    anchor is the entry's entryUUID (the export's), which each entry read
    is then given as an attribute.
    """

    def __init__(self, directory: LDAPDirectory, method: str, streams: list[Stream], *,
                 server: str, anchor_of: AnchorOf | None = None,
                 empty_mark: str | None = None) -> None:
        super().__init__(streams)
        self.directory = directory
        self.method = method
        self.server = server
        self.anchor_of = anchor_of
        self.empty_mark = empty_mark

    def options(self, stream: Stream) -> ReadOptions:
        options = stream.options
        if self.method == "timestamp":
            # The timestamp read asks for these; a full read must hash the same attributes.
            attrs = list(options.attrs or [])
            attrs += [a for a in ("entryUUID", "modifyTimestamp") if a not in attrs]
            options = replace(options, attrs=attrs)
        return options

    def with_uuid(self, uuid: str, entry: Entry) -> Entry:
        if self.anchor_of is None and uuid and not entry.first("entryUUID"):
            entry.set("entryUUID", [uuid.encode()])
        return entry

    # -- everything -----------------------------------------------------------
    def read_all(self) -> Iterator[tuple[str, Entry]]:
        """Every entry of every stream, once, with its UUID; the cursors and maps
        a full run leaves are taken as it reads."""
        seen: set[str] | None = set() if len(self.streams) > 1 else None
        for stream in self.streams:
            options = self.options(stream)
            high_water: str | None = None
            if self.method == "syncrepl":
                read = read_changes(self.directory, None, options)
                entries: Iterable[tuple[str, Entry]] = read
            else:
                entries = ((e.first("entryUUID") or "", e) for e in self.directory.read(options))
            for uuid, entry in entries:
                self.with_uuid(uuid, entry)
                if uuid:
                    anchor = self.anchor_of(uuid, entry) if self.anchor_of else uuid
                    if anchor:
                        stream.read[uuid] = anchor
                if self.method == "timestamp":
                    stamp = entry.first("modifyTimestamp")
                    if stamp and (high_water is None or stamp > high_water):
                        high_water = stamp
                if seen is not None:
                    dn = normalize_dn(entry.dn)
                    if dn in seen:
                        continue    # export containers may nest
                    seen.add(dn)
                yield uuid, entry
            if self.method == "syncrepl":
                self.pending[stream.cursor(COOKIE)] = read.cookie
            else:
                # An empty stream has no timestamp yet (the export starts it
                # from the epoch, to read it incrementally next time).
                self.pending[stream.cursor(HIGH_WATER)] = high_water or self.empty_mark

    # -- what changed ---------------------------------------------------------
    def read_changes(self, tracking: ChangeState) -> Changes | str:
        """What changed in each stream since its cursor; else why a full read is needed."""
        # (On disk past a few hundred: each entry is kilobytes as objects.)
        changed = EntrySpool()
        try:
            found = self._read_into(tracking, changed)
        except BaseException:
            changed.close()
            raise
        if isinstance(found, str):
            changed.close()
        return found

    def _read_into(self, tracking: ChangeState, changed: EntrySpool) -> Changes | str:
        """:meth:`read_changes`, the entries read into ``changed``."""
        deleted: set[str] = set()
        known: dict[str, str] = {}
        for stream in self.streams:
            options = self.options(stream)
            # The UUIDs read, for the map (an export's anchor is its UUID),
            # on disk: a change of many entries reads many.
            uuids = stream.read = PairSpool()
            if self.method == "syncrepl":
                cookie = tracking.cursor(stream.cursor(COOKIE))
                if not cookie:
                    return f"no syncrepl cookie stored{stream.where('for')}"
                read = read_changes(self.directory, cookie, options)
                try:
                    for uuid, entry in read:
                        self.note_read(uuids, uuid)
                        changed.append((uuid, self.with_uuid(uuid, entry)))
                except RefreshRequired as exc:
                    return (f"{self.server} cannot serve the stored cookie"
                            f"{stream.where('of')} ({exc})")
                here = stream.map.anchors_of(read.deleted)
                if read.present is not None:
                    # A present phase: the gone are the map's UUIDs it did not list.
                    try:
                        here.update(stream.map.gone_except(read.present))
                    finally:
                        read.present.close()
                gone = set(here)
                self.pending[stream.cursor(COOKIE)] = read.cookie
            else:
                high_water = tracking.cursor(stream.cursor(HIGH_WATER))
                if not high_water:
                    return f"no modifyTimestamp high-water mark stored{stream.where('for')}"
                stamped = read_since_timestamp(self.directory, high_water, options)
                for uuid, entry in stamped.changed:
                    self.note_read(uuids, uuid)
                    changed.append((uuid, self.with_uuid(uuid, entry)))
                stamped.changed = []
                here = stream.map.gone_except(stamped.present)
                gone = set(here)
                self.pending[stream.cursor(HIGH_WATER)] = stamped.high_water
            stream.gone = gone
            deleted |= gone
            known.update(here)
        return Changes(changed, deleted, known)

    def note_read(self, read: PairSpool, uuid: str) -> None:
        """A UUID read by a change read, for the map: the export's anchor is
        its UUID; an import's is noted by the import (it is not the UUID)."""
        if self.anchor_of is None and uuid:
            read[uuid] = uuid

    def read_uuids(self, uuids: list[str]) -> dict[str, Entry]:
        """The entries with these UUIDs that a stream selects, the first found."""
        found: dict[str, Entry] = {}
        for stream in self.streams:
            for entry in read_by_uuids(self.directory, uuids, self.options(stream)):
                found.setdefault(entry.first("entryUUID") or "", entry)
        return found
