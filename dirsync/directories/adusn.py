"""Change reads from Active Directory without DirSync: ``uSNChanged`` above a mark.

For an account without "Replicating Directory Changes". Every object has a
``uSNChanged``, the update sequence number of its last change on the DC
that answers; the root DSE's ``highestCommittedUSN`` is the DC's latest
(MS-ADTS 3.1.1.1.9, 3.1.1.3.2.1). Objects of the recipient classes whose
``uSNChanged`` is above the mark of the last run have changed since.

What this cannot see: deletes (the tombstone leaves the search), so a
periodic full run finds them. USNs are a DC's own: a mark taken on one DC
means nothing on another, so the mark names its DC (``dsServiceName``) and
a read from another DC is refused (:class:`USNMarkRefused`): read in full.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ldap

from dirsync.directories.ad import RECIPIENT_CLASSES, normalize
from dirsync.directories.base import ReadOptions
from dirsync.directories.ldap import LDAPDirectory, directory_error
from dirsync.directories.syncrepl import RefreshRequired
from dirsync.entry import Entry
from dirsync.errors import DirectoryError, EntryError

if TYPE_CHECKING:
    from dirsync.directories.ad import ADDirectory


class USNMarkRefused(RefreshRequired, DirectoryError):
    """The mark is not this DC's, or lies ahead of it: read everything."""


@dataclass(frozen=True)
class USNMark:
    """Where the last read ended: a DC and its highestCommittedUSN then."""

    server: str
    usn: int

    def dumps(self) -> str:
        return f"{self.usn} {self.server}"

    @classmethod
    def loads(cls, text: str) -> USNMark:
        usn, _, server = text.partition(" ")
        if not usn.isdigit() or not server:
            raise USNMarkRefused(f"not a uSNChanged mark: {text[:80]!r}")
        return cls(server, int(usn))


class USNRead:
    """The recipient-class objects changed since ``mark``, and the next mark.

    Each item is ``(entry, recipient)``: ``recipient`` False for an object
    that is no longer one (disabled, hidden, its mail removed), which the
    caller deletes if it had imported it.
    """

    def __init__(self, directory: ADDirectory, mark: USNMark | None) -> None:
        self.directory = directory
        self.mark = mark
        self.next_mark: USNMark | None = None
        self.rejected: list[EntryError] = []

    def _now(self) -> USNMark:
        try:
            found = self.directory.conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)",
                                                 ["highestCommittedUSN", "dsServiceName"])
        except ldap.LDAPError as exc:
            raise directory_error(exc, self.directory.server_url) from exc
        attrs = found[0][1] if found else {}
        usn = attrs.get("highestCommittedUSN", [b""])[0].decode()
        server = attrs.get("dsServiceName", [b""])[0].decode()
        if not usn.isdigit() or not server:
            raise DirectoryError(f"{self.directory.server_url}: the root DSE gives no "
                                 "highestCommittedUSN")
        return USNMark(server, int(usn))

    def __iter__(self) -> Iterator[tuple[Entry, bool]]:
        directory = self.directory
        # Taken before the search: what changes meanwhile is read again next
        # time (and found unchanged), never lost.
        now = self._now()
        if self.mark is not None:
            if self.mark.server.lower() != now.server.lower():
                raise USNMarkRefused(f"{directory.server_url}: the uSNChanged mark is from "
                                     f"{self.mark.server}, this is {now.server}")
            if self.mark.usn > now.usn:
                raise USNMarkRefused(f"{directory.server_url}: the uSNChanged mark "
                                     f"{self.mark.usn} is ahead of the DC ({now.usn}): "
                                     "restored from a backup?")
        since = self.mark.usn + 1 if self.mark is not None else 0
        from dirsync.directories.ad import READ_ATTRIBUTES

        options = ReadOptions(base=directory.effective_base(),
                              filter=f"(&{RECIPIENT_CLASSES}(uSNChanged>={since}))",
                              attrs=list(READ_ATTRIBUTES))
        # The plain LDAP read: objects that stopped being recipients must be seen too.
        for entry in LDAPDirectory.read(directory, options):
            try:
                entry = directory.complete(normalize(entry))
            except ValueError as exc:
                self.rejected.append(EntryError(entry.dn, f"malformed identifier: {exc}"))
                continue
            yield entry, directory.rule(entry)
        self.next_mark = now


def read_usn_changes(directory: ADDirectory, mark: USNMark | None) -> USNRead:
    return USNRead(directory, mark)
