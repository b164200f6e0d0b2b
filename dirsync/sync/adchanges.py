"""What changed in Active Directory since the last run, read with DirSync.

The cursor is the DirSync cookie (base64 text in the state store). A change
comes back with its changed attributes only, so every object still below the
base is read whole again by its GUID (:meth:`ADDirectory.read_guids`), which
also decides whether it is still a recipient: one that was deleted, moved
out of the base, disabled, hidden or stripped of its addresses is a delete
of its anchor.

A full run starts a cursor with a DirSync search that matches nothing: the
cookie it returns marks the DC's position before the full read, so a change
made during that read is read again next time, never lost.

DirSync needs "Replicating Directory Changes"; an account without it stops
the run with exit 2 and a hint. ``change_reads = "usn"`` in the directory's
table chooses the ``uSNChanged`` reader instead
(:mod:`dirsync.directories.adusn`): the objects changed above a mark, read
whole the same way; it cannot see deletes, which wait for the next full run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dirsync.directories import ReadOptions
from dirsync.directories.addirsync import (
    DirSyncRead,
    cookie_bytes,
    cookie_text,
    read_dirsync,
)
from dirsync.directories.adusn import USNMark, USNRead
from dirsync.directories.syncrepl import RefreshRequired
from dirsync.entry import Entry
from dirsync.sync.changefeed import AnchorOf, ChangeFeed, Changes, Stream
from dirsync.sync.changestate import DIRSYNC, USN, ChangeState

if TYPE_CHECKING:
    from dirsync.directories.ad import ADDirectory


@dataclass
class ADChanges:
    """The recipients to bring in step, the GUIDs gone, and the next cookie."""

    changed: list[tuple[str, Entry]] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)
    cookie: str | None = None
    #: Changes the stream held that could not be read (no GUID, a strange
    #: attribute option): what they changed is unknown, so a full run follows.
    unreadable: int = 0


def read_ad_changes(directory: ADDirectory, cursor: str, options: ReadOptions) -> ADChanges:
    """The changes since ``cursor``; DirSyncCookieRefused when it cannot be served.

    ``options`` are the full read's (the mapping's filter and attributes):
    DirSync reports an object only when one of the attributes it is asked
    for changed, so it is asked for every attribute the mapping reads.
    """
    from dirsync.directories.ad import READ_ATTRIBUTES

    wanted = [a for a in (options.attrs or []) if a != "*"]
    read = read_dirsync(directory, cookie_bytes(cursor),
                        attrs=list(dict.fromkeys([*READ_ATTRIBUTES, *wanted])))
    result = ADChanges()
    current: list[str] = []
    for change in read:
        if change.deleted or not change.in_scope:
            result.gone.add(change.guid)
        else:
            current.append(change.guid)
    _complete(directory, current, options, result)
    result.cookie = cookie_text(read.cookie) if read.cookie else None
    result.unreadable = len(read.rejected)
    return result


def _complete(directory: ADDirectory, guids: list[str], options: ReadOptions,
              result: ADChanges) -> None:
    for guid, entry in directory.read_guids(guids, options=options):
        if entry is None:
            result.gone.add(guid)
        else:
            result.changed.append((guid, entry))


def read_usn_changes(directory: ADDirectory, cursor: str, options: ReadOptions) -> ADChanges:
    """The objects changed above the ``uSNChanged`` mark ``cursor`` (no deletes);
    USNMarkRefused when the mark is another DC's or ahead of this one."""
    read = USNRead(directory, USNMark.loads(cursor))
    guids = [g for g in (entry.first("objectGUID") for entry, _ in read) if g]
    result = ADChanges()
    _complete(directory, guids, options, result)
    result.cookie = read.next_mark.dumps() if read.next_mark else None
    result.unreadable = len(read.rejected)
    return result


def start_usn_mark(directory: ADDirectory) -> str:
    """The DC's ``highestCommittedUSN`` now, as a mark to read changes above."""
    return USNRead(directory, None)._now().dumps()


def start_cookie(directory: ADDirectory) -> str | None:
    """A cookie for the DC's position now, from a DirSync search that matches nothing."""
    read = DirSyncRead(directory, None, attrs=["objectGUID"])
    read.filter = "(objectGUID=" + "\\00" * 16 + ")"
    for _ in read:
        pass
    return cookie_text(read.cookie) if read.cookie else None


class ADFeed(ChangeFeed):
    """An AD source read by DirSync (``dirsync``), or above a ``uSNChanged``
    mark (``usn``) for an account without the DirSync right; one stream."""

    def __init__(self, directory: ADDirectory, stream: Stream, tracking: ChangeState, *,
                 name: str, anchor_of: AnchorOf) -> None:
        super().__init__([stream])
        self.directory = directory
        self.name = name
        self.anchor_of = anchor_of
        # Chosen by the directory's change_reads: a missing DirSync right is
        # an error to fix (exit 2), never a quiet loss of delete detection.
        self.method = "usn" if directory.change_reads == "usn" else "dirsync"

    def own_cursor(self) -> str:
        return DIRSYNC if self.method == "dirsync" else USN

    def read_all(self, entries: Callable[[], Iterable[Entry]]) -> Iterator[tuple[str, Entry]]:
        """The recipients ``entries`` reads, and a cursor that starts before them."""
        # Started before the read: a change made during it is read again
        # by the next run, never lost. Without the right, start_cookie
        # raises MissingDirSyncRight (exit 2) before anything is written.
        if self.method == "dirsync":
            cookie = start_cookie(self.directory)
        else:
            cookie = start_usn_mark(self.directory)
        stream = self.streams[0]
        for entry in entries():
            uuid = entry.first("objectGUID") or ""
            if uuid:
                anchor = self.anchor_of(uuid, entry)
                if anchor:
                    stream.read[uuid] = anchor
            yield uuid, entry
        self.pending[self.own_cursor()] = cookie
        # The other cursor no longer holds.
        self.pending[USN if self.method == "dirsync" else DIRSYNC] = None

    def read_changes(self, tracking: ChangeState) -> Changes | str:
        cursor = tracking.cursor(self.own_cursor())
        if not cursor:
            return "no DirSync cookie stored"
        options = self.streams[0].options
        try:
            if self.method == "dirsync":
                ad = read_ad_changes(self.directory, cursor, options)
            else:
                ad = read_usn_changes(self.directory, cursor, options)
        except RefreshRequired as exc:
            return f"the DC cannot serve the stored {self.method} cursor ({exc})"
        if ad.unreadable:
            return f"DirSync returned {ad.unreadable} change(s) that could not be read"
        uuids = self.streams[0].map
        known = uuids.anchors_of(ad.gone | {g for g, _ in ad.changed} | tracking.retry())
        self.pending[self.own_cursor()] = ad.cookie
        return Changes(ad.changed, set(uuids.anchors_of(ad.gone)), known)

    def read_uuids(self, uuids: list[str]) -> dict[str, Entry]:
        return {g: e for g, e in self.directory.read_guids(uuids, options=self.streams[0].options)
                if e is not None}
