"""Change reads from Active Directory with DirSync (MS-ADTS 3.1.1.3.4.1.3).

A search with the DirSync control (:mod:`dirsync.directories.adcontrols`)
and no cookie returns every object and a cookie; the same search with that
cookie returns only the objects changed since, each with only its changed
attributes plus ``objectGUID`` and ``instanceType``. What the stream shows,
and what this module makes of it (observed with Samba 4.17, as MS-ADTS
describes AD):

- the search base must be a naming context (an OU gives error 50), and
  DirSync does not mix with paged results: one search, ``moreResults``
  followed with the new cookie;
- a delete comes back as ``CN=<old>\\0ADEL:<guid>,CN=Deleted Objects,...``
  with the same ``objectGUID``, stripped of ``mail``, ``proxyAddresses``
  and ``objectCategory``: so the filter is on ``objectClass`` only, and
  whether an object is a recipient is decided by the caller, on what it
  knows of the whole object;
- a rename or a move returns the new DN with ``name`` and ``parentGUID``
  (``cn`` is never returned: ``name`` is asked for);
- with the incremental-values flag, member changes arrive as
  ``member;range=1-1`` (values added) and ``member;range=0-0`` (removed);
- a cookie the server no longer takes is refused (Samba: error 12, "Unable
  to unmarshall cookie"): :class:`DirSyncCookieRefused`, after which the
  caller reads everything again, as for a refused syncrepl cookie;
- without "Replicating Directory Changes" on the naming context the
  search fails with error 50: :class:`MissingDirSyncRight`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import ldap
import ldap.dn

from dirsync.directories.adcontrols import (
    ANCESTORS_FIRST_ORDER,
    DIRSYNC_OID,
    INCREMENTAL_VALUES,
    MAX_COOKIE,
    DirSyncControl,
    DirSyncDecodeError,
)
from dirsync.directories.adrange import RangeError, parse_range
from dirsync.directories.ldap import directory_error
from dirsync.directories.syncrepl import RefreshRequired
from dirsync.entry import Entry, is_under
from dirsync.errors import DirectoryError, EntryError, FatalDirectoryError

if TYPE_CHECKING:
    from dirsync.directories.ad import ADDirectory

DEFAULT_FLAGS = INCREMENTAL_VALUES | ANCESTORS_FIRST_ORDER

#: The objects DirSync is asked about: by class only (see the module docstring).
DIRSYNC_FILTER = "(|(objectClass=user)(objectClass=contact)(objectClass=group))"

#: What a change read asks for, beyond the attributes of a full read:
#: ``name`` and ``parentGUID`` make renames and moves visible, ``isDeleted``
#: deletes.
CHANGE_ATTRIBUTES = ["name", "parentGUID", "isDeleted"]

#: How many rounds of ``moreResults`` one read may take: each round is
#: bounded by the server's MaxBytes, so this bounds the whole read.
MAX_ROUNDS = 100_000


class DirSyncCookieRefused(RefreshRequired, DirectoryError):
    """The DC does not take the cookie (too old, another DC's, damaged): read everything."""


class MissingDirSyncRight(FatalDirectoryError):
    """The account lacks "Replicating Directory Changes" on the naming context."""


@dataclass
class ADChange:
    """One changed object, as DirSync reported it.

    ``attrs`` holds only what changed (plus ``objectGUID``); an attribute
    present with no values was cleared. ``added`` and ``removed`` hold the
    value changes of linked attributes (``member``) under the
    incremental-values flag.
    """

    guid: str
    dn: str
    deleted: bool
    attrs: Entry
    added: dict[str, list[bytes]] = field(default_factory=dict)
    removed: dict[str, list[bytes]] = field(default_factory=dict)
    #: True when the object is (now) below the directory's base; an object
    #: moved out of it is, to the address book, gone.
    in_scope: bool = True

    @property
    def renamed(self) -> bool:
        """A rename or a move: the new name or parent came with the change.

        Meaningful in an incremental read; a read without a cookie brings
        every object with its name.
        """
        return not self.deleted and ("name" in self.attrs or "parentGUID" in self.attrs)


def merge_change(known: Entry, change: ADChange) -> Entry:
    """``known`` (the whole object as last read) with ``change`` applied.

    An attribute in the change replaces the known one (one without values
    was cleared); member values added or removed under the incremental-values
    flag are added or removed; the DN is the change's. Values compare as
    DirSync sends them: member DNs by their text, case-insensitively.
    For an incremental run that keeps whole objects; the other way is
    :meth:`ADDirectory.read_guids`, which reads them again.
    """
    merged = known.copy()
    merged.dn = change.dn
    for name, values in change.attrs.attrs.items():
        if name.lower() != "instancetype":  # DirSync's own, not the object's
            merged.set(name, values)  # no values: cleared
    if "name" in change.attrs and not change.deleted:
        # DirSync never returns the naming attribute (cn): it follows the new RDN.
        try:
            rdn_attr, rdn_value, _ = ldap.dn.str2dn(change.dn)[0][0]
            merged.set(rdn_attr, [rdn_value.encode()])
        except (ldap.DECODING_ERROR, IndexError):
            pass
    for name, values in change.added.items():
        have = {v.lower() for v in merged.get(name)}
        new = [v for v in values if v.lower() not in have]
        if new:
            merged.add(name, new)
    for name, values in change.removed.items():
        drop = {v.lower() for v in values}
        merged.set(name, [v for v in merged.get(name) if v.lower() not in drop])
    return merged


def is_deleted_dn(dn: str) -> bool:
    """``CN=x\\0ADEL:<guid>,CN=Deleted Objects,...``: AD's tombstone name."""
    try:
        parts = ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR:
        return False
    return bool(parts) and "\nDEL:" in parts[0][0][1]


def parse_change(dn: str, attrs: dict[str, list[bytes]], base: str) -> ADChange:
    """One DirSync result entry as an :class:`ADChange`; ValueError if unusable."""
    from dirsync.directories.ad import guid_text, normalize

    raw = attrs.get("objectGUID") or next(
        (v for k, v in attrs.items() if k.lower() == "objectguid"), None)
    if not raw:
        raise ValueError("no objectGUID")
    guid = guid_text(raw[0])
    plain: dict[str, list[bytes]] = {}
    added: dict[str, list[bytes]] = {}
    removed: dict[str, list[bytes]] = {}
    for name, values in attrs.items():
        if ";" not in name:
            plain[name] = values
            continue
        try:
            step = parse_range(name)
        except RangeError as exc:
            raise ValueError(str(exc)) from exc
        if step is not None and step.low == step.high == 1:
            added.setdefault(step.attr, []).extend(values)
        elif step is not None and step.low == step.high == 0:
            removed.setdefault(step.attr, []).extend(values)
        else:
            raise ValueError(f"unexpected attribute option in {name!r}")
    entry = normalize(Entry(dn, plain))
    deleted = (entry.first("isDeleted") or "").upper() == "TRUE" or is_deleted_dn(dn)
    in_scope = not deleted and (not base or is_under(dn, base))
    return ADChange(guid=guid, dn=dn, deleted=deleted, attrs=entry, added=added,
                    removed=removed, in_scope=in_scope)


class DirSyncRead:
    """The changes since ``cookie``: iterate it, then take :attr:`cookie`.

    The new cookie is known only once every change has been read; a caller
    stores it only when its run ended well (STYLE.md item 4).
    """

    def __init__(self, directory: ADDirectory, cookie: bytes | None, *,
                 attrs: list[str] | None = None, flags: int = DEFAULT_FLAGS,
                 max_bytes: int = 0) -> None:
        from dirsync.directories.ad import READ_ATTRIBUTES

        self.directory = directory
        self.start_cookie = cookie or b""
        self.mode = "incremental" if cookie else "full"
        wanted = attrs if attrs is not None else READ_ATTRIBUTES
        self.attrs = list(dict.fromkeys([*wanted, *CHANGE_ATTRIBUTES]))
        self.flags = flags
        self.max_bytes = max_bytes
        self.cookie: bytes | None = None
        self.rejected: list[EntryError] = []
        self.filter = DIRSYNC_FILTER

    def __iter__(self) -> Iterator[ADChange]:
        directory = self.directory
        nc = directory.naming_context()
        base = directory.effective_base()
        control = DirSyncControl(flags=self.flags, max_bytes=self.max_bytes,
                                 cookie=self.start_cookie)
        classes = {DIRSYNC_OID: DirSyncControl}
        conn = directory._connect()
        try:
            for _ in range(MAX_ROUNDS):
                msgid = conn.search_ext(nc, ldap.SCOPE_SUBTREE, self.filter, self.attrs,
                                        serverctrls=[control])
                while True:
                    kind, data, _, ctrls = conn.result3(msgid, 0, directory.timeout,
                                                        resp_ctrl_classes=classes)
                    if kind == ldap.RES_SEARCH_RESULT:
                        break
                    for dn, attrs in data:
                        if dn is None:  # a search reference
                            continue
                        try:
                            yield parse_change(dn, attrs, base)
                        except ValueError as exc:
                            self.rejected.append(EntryError(dn, f"DirSync: {exc}"))
                answer = next((c for c in ctrls if c.controlType == DIRSYNC_OID), None)
                if answer is None:
                    raise DirectoryError(f"{directory.server_url}: the DirSync search ended "
                                         "without a DirSync control")
                control = DirSyncControl(flags=self.flags, max_bytes=self.max_bytes,
                                         cookie=answer.cookie)
                if not answer.more_results:
                    self.cookie = answer.cookie
                    return
            raise DirectoryError(f"{directory.server_url}: DirSync still had more results "
                                 f"after {MAX_ROUNDS} rounds")
        except DirSyncDecodeError as exc:
            raise DirectoryError(f"{directory.server_url}: {exc}") from exc
        except ldap.LDAPError as exc:
            raise self._error(exc) from exc
        finally:
            try:
                conn.unbind_s()
            except ldap.LDAPError:
                pass

    def _error(self, exc: ldap.LDAPError) -> DirectoryError:
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        text = str(info.get("info") or info.get("desc") or exc)
        url = self.directory.server_url
        if isinstance(exc, ldap.INSUFFICIENT_ACCESS) and "naming context" not in text:
            error = MissingDirSyncRight(
                f"{url}: {self.directory.bind_dn!r} may not read changes with DirSync: it "
                "lacks the \"Replicating Directory Changes\" right on "
                f"{self.directory.naming_context()} ({text})")
            error.hint = ("grant it to the account on the domain root, or set change_reads "
                          f"= \"usn\" in [directories.{self.directory.name}] to read "
                          "changes by uSNChanged (deletes then wait for a full run)")
            return error
        if self.start_cookie and isinstance(exc, (ldap.UNAVAILABLE_CRITICAL_EXTENSION,
                                                  ldap.PROTOCOL_ERROR, ldap.OTHER,
                                                  ldap.UNWILLING_TO_PERFORM)):
            return DirSyncCookieRefused(f"{url}: the DC refused the DirSync cookie: {text}")
        if isinstance(exc, ldap.UNAVAILABLE_CRITICAL_EXTENSION):
            return FatalDirectoryError(f"{url}: the server does not support DirSync: {text}")
        return directory_error(exc, url)


def cookie_text(cookie: bytes) -> str:
    """A cookie as the state store keeps cursors: text (base64)."""
    return base64.b64encode(cookie).decode("ascii")


def cookie_bytes(text: str) -> bytes:
    """A stored cursor back as a cookie; a damaged one calls for a full run."""
    try:
        cookie = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise DirSyncCookieRefused(f"the stored DirSync cookie is damaged: {exc}") from exc
    if not cookie or len(cookie) > MAX_COOKIE:
        raise DirSyncCookieRefused(f"the stored DirSync cookie has {len(cookie)} bytes")
    return cookie


def can_read_changes(directory: ADDirectory) -> None:
    """Raise :class:`MissingDirSyncRight` (or another error) unless DirSync is allowed.

    A DirSync search that matches nothing (the nil GUID): the server checks
    the right before it searches, so the probe costs no read of the domain.
    """
    read = DirSyncRead(directory, None, attrs=["objectGUID"])
    read.filter = "(objectGUID=" + "\\00" * 16 + ")"
    for _ in read:
        pass


def read_dirsync(directory: ADDirectory, cookie: bytes | None, **options: object) -> DirSyncRead:
    """The objects changed since ``cookie`` (everything when None) and the next cookie."""
    return DirSyncRead(directory, cookie, **options)  # type: ignore[arg-type]
