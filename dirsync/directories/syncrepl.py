"""Incremental reads from LDAP: RFC 4533 refreshOnly, and a timestamp fallback.

A refreshOnly search with the cookie of the last run returns only what
changed since: added and modified entries whole, and deletes in one of two
ways, both of which slapd uses (section 3.4 of RFC 4533):

- the *delete phase*: the UUIDs of deleted entries, explicitly (slapd does
  this from its ``syncprov-sessionlog``);
- the *present phase*: the UUIDs of every entry that still exists, so that
  everything else was deleted (slapd falls back to this after a restart, or
  when the session log does not reach back far enough).

Neither names the DN of a deleted entry, so the caller keeps a UUID-to-anchor
map. The cookie is handed back, never stored here: the caller advances it
only after its run has applied the changes (STYLE.md item 4).

For servers without syncprov, :func:`read_since_timestamp` reads entries
whose ``modifyTimestamp`` is at or after a high-water mark, plus the full set
of entryUUIDs to find deletes by comparison.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Literal

import ldap
import ldap.filter
import ldap.ldapobject
import ldap.syncrepl

from dirsync.directories.base import ReadOptions
from dirsync.directories.ldap import _SCOPES, LDAPDirectory, directory_error
from dirsync.entry import Entry, display_dn
from dirsync.errors import FatalDirectoryError

log = logging.getLogger("dirsync.syncrepl")

_SCOPE_NAMES: dict[int, Literal["base", "one", "sub"]] = {
    ldap.SCOPE_BASE: "base", ldap.SCOPE_ONELEVEL: "one", ldap.SCOPE_SUBTREE: "sub"}

#: e-syncRefreshRequired (RFC 4533 section 2.5): the cookie is too old.
SYNC_REFRESH_REQUIRED = 4096


class RefreshRequired(Exception):
    """The server cannot answer from this cookie: read everything again."""


class PresentUUIDs:
    """The UUIDs a present phase lists, every entry that survives: past a few
    thousand in an unlinked temporary file (a million as a set of strings
    were about 100 MB). Read back in the order listed; :meth:`close` ends it."""

    def __init__(self, memory: int = 4096) -> None:
        self.memory = memory
        self._held: list[str] = []
        self._file: IO[str] | None = None

    def update(self, uuids: Iterable[str]) -> None:
        self._held.extend(uuids)
        if len(self._held) > self.memory:
            if self._file is None:
                # Lives as long as this list; close() ends it.
                self._file = tempfile.TemporaryFile(  # noqa: SIM115
                    "w+", encoding="ascii", prefix="dirsync-present-")
            # (python-ldap makes them of the control's 16 bytes: hex and dashes.)
            self._file.writelines(f"{uuid}\n" for uuid in self._held)
            self._held = []

    def __iter__(self) -> Iterator[str]:
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            for line in self._file:
                yield line[:-1]
            self._file.seek(0, 2)       # appends go on at the end
        yield from list(self._held)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._held = []


class _Consumer(ldap.ldapobject.LDAPObject, ldap.syncrepl.SyncreplConsumer):  # type: ignore[misc]
    """python-ldap's syncrepl state machine, collecting into plain data."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.cookie: str | None = None
        self.pending: deque[tuple[str, Entry]] = deque()
        self.deleted: set[str] = set()
        self.present = PresentUUIDs()
        self.present_phase_ended = False
        self.explicit_deletes = False

    def syncrepl_get_cookie(self) -> str | None:
        return self.cookie

    def syncrepl_set_cookie(self, cookie: str) -> None:
        self.cookie = cookie

    def syncrepl_entry(self, dn: str, attrs: dict[str, list[bytes]], uuid: str) -> None:
        self.pending.append((uuid, Entry.from_server(display_dn(dn), attrs)))

    def syncrepl_delete(self, uuids: list[str]) -> None:
        self.deleted.update(uuids)
        self.explicit_deletes = True

    def syncrepl_present(self, uuids: list[str] | None, refreshDeletes: bool = False) -> None:
        if uuids is not None:
            self.present.update(uuids)
        elif refreshDeletes:
            self.explicit_deletes = True
        else:
            # End of a present phase: what was not presented is gone.
            self.present_phase_ended = True

    def syncrepl_refreshdone(self) -> None:
        pass


@dataclass
class ChangeRead:
    """One incremental read. Iterate it for ``(uuid, entry)`` of every added
    or modified entry; afterwards ``cookie`` and the delete information are set.
    """

    mode: Literal["full", "incremental"]
    _events: Iterator[tuple[str, Entry]] = field(repr=False, default=iter(()))
    cookie: str | None = None
    deleted: set[str] = field(default_factory=set)
    #: Set when the server used a present phase: every UUID that survives
    #: (the reader closes it).
    present: PresentUUIDs | None = None

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        return self._events

    def deleted_among(self, known: set[str]) -> set[str]:
        """Which of the ``known`` UUIDs are gone, whichever way the server said so."""
        gone = self.deleted & known
        if self.present is not None:
            # (A few known UUIDs; a whole map is compared on disk:
            # ChangeState.gone_except.)
            gone |= known - set(self.present)
        return gone


def read_changes(directory: LDAPDirectory, cookie: str | None,
                 options: ReadOptions | None = None) -> ChangeRead:
    """A refreshOnly sync search from ``cookie`` (None: everything, mode full).

    Raises :class:`RefreshRequired` when the server refuses the cookie.
    """
    opts = options or ReadOptions()
    base = opts.base if opts.base is not None else directory.base
    scope = _SCOPES[opts.scope or directory.url_scope or "sub"]
    filt = opts.filter or directory.url_filter or "(objectClass=*)"
    attrs = opts.attrs if opts.attrs is not None else (directory.url_attrs or ["*", "+"])
    if not cookie:
        return _full_read(directory, base, scope, filt, attrs)
    conn: _Consumer = directory._connect(factory=_Consumer)
    conn.cookie = cookie
    read = ChangeRead(mode="incremental")

    def events() -> Iterator[tuple[str, Entry]]:
        read_whole = False
        try:
            msgid = conn.syncrepl_search(base, scope, mode="refreshOnly", filterstr=filt,
                                         attrlist=attrs)
            while True:
                more = conn.syncrepl_poll(msgid=msgid, all=0, timeout=directory.timeout)
                while conn.pending:
                    yield conn.pending.popleft()
                if not more:
                    break
            read_whole = True
        except ldap.LDAPError as exc:
            info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            # A cookie the server cannot serve (too old, from a reset or
            # another server: "consumer state is newer than provider").
            if info.get("result") == SYNC_REFRESH_REQUIRED or (cookie and isinstance(
                    exc, (ldap.PROTOCOL_ERROR, ldap.OTHER, ldap.UNWILLING_TO_PERFORM))):
                raise RefreshRequired(str(info.get("info") or info.get("desc") or exc)) from exc
            raise directory_error(exc, directory.server_url) from exc
        finally:
            _unbind(conn)
            if not read_whole:          # failed or let go of: nobody reads it
                conn.present.close()
        read.cookie = conn.cookie
        read.deleted = set(conn.deleted)
        if conn.present_phase_ended:
            # Every surviving entry was presented; the rest were deleted.
            read.present = conn.present
        else:
            conn.present.close()

    read._events = events()
    return read


def _full_read(directory: LDAPDirectory, base: str, scope: int, filt: str,
               attrs: list[str]) -> ChangeRead:
    """Everything, by a plain search, and the cookie the server gave just before.

    Not a cookie-less refresh: slapd (2.5, multi-provider) bounds a refresh
    by its contextCSN, and its contextCSN can stay behind an entry it
    replicated and shows to every plain search, until the next change from
    that entry's site. A refresh then leaves the entry out and hands back a
    cookie that skips it. A plain search has no such bound; the cookie, taken
    first, is at or before everything read, so what changes meanwhile is read
    again next time (and found unchanged), never lost.
    """
    read = ChangeRead(mode="full")
    wanted = {a.lower() for a in attrs}
    keep_uuid = bool(wanted & {"entryuuid", "+"})
    request = attrs if keep_uuid else [*attrs, "entryUUID"]

    # No set of the UUIDs read: the caller sees each one as it comes (a
    # million of them held here were a tenth of a gigabyte).
    def events() -> Iterator[tuple[str, Entry]]:
        read.cookie = _cookie_now(directory, base, scope)
        for entry in directory.read(ReadOptions(base=base, scope=_SCOPE_NAMES[scope],
                                                filter=filt, attrs=request)):
            uuid = entry.first("entryUUID") or ""
            if not keep_uuid:
                entry.remove("entryUUID")
            yield uuid, entry

    read._events = events()
    return read


def _cookie_now(directory: LDAPDirectory, base: str, scope: int) -> str | None:
    """The server's cookie at this moment: a refresh that matches no entry."""
    conn: _Consumer = directory._connect(factory=_Consumer)
    try:
        msgid = conn.syncrepl_search(base, scope, mode="refreshOnly",
                                     filterstr="(!(objectClass=*))", attrlist=["1.1"])
        while conn.syncrepl_poll(msgid=msgid, all=0, timeout=directory.timeout):
            pass
    except ldap.NO_SUCH_OBJECT:
        pass
    except ldap.LDAPError as exc:
        raise directory_error(exc, directory.server_url) from exc
    finally:
        _unbind(conn)
    return conn.cookie


def _unbind(conn: _Consumer) -> None:
    try:
        conn.unbind_s()
    except ldap.LDAPError:
        pass


#: Entries read back by entryUUID, this many per search.
UUID_CHUNK = 200


def read_by_uuids(directory: LDAPDirectory, uuids: list[str],
                  options: ReadOptions | None = None) -> Iterator[Entry]:
    """The entries with these entryUUIDs that ``options`` selects (entryUUID
    always among the attributes), a few hundred UUIDs to a search."""
    opts = options or ReadOptions()
    base_filter = opts.filter or "(objectClass=*)"
    attrs = list(opts.attrs or ["*"])
    if "entryUUID" not in attrs:
        attrs.append("entryUUID")
    for start in range(0, len(uuids), UUID_CHUNK):
        wanted = "".join(f"(entryUUID={ldap.filter.escape_filter_chars(u)})"
                         for u in uuids[start:start + UUID_CHUNK])
        yield from directory.read(ReadOptions(base=opts.base, scope=opts.scope,
                                              filter=f"(&{base_filter}(|{wanted}))",
                                              attrs=attrs))


def supports_syncrepl(directory: LDAPDirectory) -> bool:
    """Whether the database under the directory's base serves sync searches.

    The root DSE is no help: slapd lists the Sync Request control as soon as
    the syncprov module is loaded, whether or not this database has the
    overlay. So ask for real: a base-scope sync search, refused with
    unavailableCriticalExtension where there is no provider.
    """
    probe = read_changes(directory, None, ReadOptions(scope="base", attrs=["1.1"]))
    try:
        for _ in probe:
            pass
    except FatalDirectoryError as exc:
        if isinstance(exc.__cause__, ldap.UNAVAILABLE_CRITICAL_EXTENSION):
            return False
        raise
    return True


@dataclass
class TimestampRead:
    """Entries changed at or after a high-water mark, and every surviving UUID."""

    changed: list[tuple[str, Entry]]
    #: Read from the server as it is iterated (once): a set of a million
    #: UUIDs was about 100 MB.
    present: Iterable[str]
    high_water: str | None


def read_since_timestamp(directory: LDAPDirectory, high_water: str | None,
                         options: ReadOptions | None = None) -> TimestampRead:
    """The fallback for servers without syncprov.

    ``modifyTimestamp>=HWM`` finds adds and modifies (one second of overlap
    is re-read on purpose: timestamps have one-second resolution, and an
    entry changed in the same second as the last read must not be missed);
    a search for entryUUID alone lists what survives, so deletes are the
    known UUIDs that are missing.
    """
    opts = options or ReadOptions()
    base_filter = opts.filter or directory.url_filter or "(objectClass=*)"
    attrs = list(opts.attrs if opts.attrs is not None else (directory.url_attrs or ["*"]))
    for wanted in ("entryUUID", "modifyTimestamp"):
        if wanted not in attrs and "+" not in attrs:
            attrs.append(wanted)
    changed_filter = (f"(&{base_filter}(modifyTimestamp>={high_water}))" if high_water
                      else base_filter)
    changed: list[tuple[str, Entry]] = []
    newest = high_water
    for entry in directory.read(ReadOptions(base=opts.base, scope=opts.scope,
                                            filter=changed_filter, attrs=attrs)):
        uuid = entry.first("entryUUID") or ""
        stamp = entry.first("modifyTimestamp")
        if stamp and (newest is None or stamp > newest):
            newest = stamp
        changed.append((uuid, entry))
    present = (e.first("entryUUID") or "" for e in directory.read(
        ReadOptions(base=opts.base, scope=opts.scope, filter=base_filter, attrs=["entryUUID"])))
    return TimestampRead(changed, present, newest)
