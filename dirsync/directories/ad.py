"""The ``ad`` kind: Active Directory as a foreign directory.

An :class:`~dirsync.directories.ldap.LDAPDirectory` that knows AD's ways:

- it reads only recipients: mail-enabled (``mail`` or ``proxyAddresses``)
  users, contacts and groups below ``base``, leaving out disabled users
  (``userAccountControl`` bit 0x2) and entries hidden from address lists
  (``msExchHideFromAddressLists`` where the schema has it, and an optional
  ``hidden_filter``);
- the anchor, ``objectGUID``, is handed on in its canonical string form
  (MS-DTYP 2.3.4.3: the first three fields little-endian), ``objectSid`` as
  ``S-1-...`` (MS-DTYP 2.4.2.1);
- large multi-valued attributes are read to their end through range
  retrieval (:mod:`dirsync.directories.adrange`);
- search references (to ``CN=Configuration`` and the like) are skipped;
- binds need TLS (``ldaps://``, or ``ldap://`` with StartTLS), and the
  usual failures (wrong password, untrusted certificate, a DC that cannot
  be reached) become one clear message each;
- it writes only below its ``write_scope`` (a connection's
  ``foreign_container``, set by the export): any other change is refused
  before it is sent, and with no scope every write is.

Change reads with the DirSync control live in
:mod:`dirsync.directories.addirsync`.
"""

from __future__ import annotations

import socket
import ssl
import struct
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import ldap

from dirsync.directories.adrange import complete_ranges
from dirsync.directories.base import ReadOptions
from dirsync.directories.ldap import LDAPDirectory, TLSOptions, directory_error
from dirsync.directories.ldapfilter import FilterError, Predicate, compile_filter
from dirsync.entry import Entry, is_under, same_dn
from dirsync.errors import (
    DirectoryError,
    EntryError,
    FatalDirectoryError,
    TransientDirectoryError,
    UsageError,
)
from dirsync.ldif.changes import Change

UF_ACCOUNTDISABLE = 0x2
HIDE_ATTRIBUTE = "msExchHideFromAddressLists"

#: What a recipient can be; computers are users too and are left out.
RECIPIENT_CLASSES = ("(|(&(objectClass=user)(!(objectClass=computer)))"
                     "(objectClass=contact)(objectClass=group))")
MAIL_ENABLED = "(|(mail=*)(proxyAddresses=*))"

#: The attributes read by default: what an address book shows, the anchor,
#: and what decides whether an entry is a recipient at all.
READ_ATTRIBUTES = [
    "objectGUID", "objectClass", "objectSid", "name", "cn", "displayName", "givenName", "sn",
    "initials", "mail", "proxyAddresses", "mailNickname", "targetAddress", "legacyExchangeDN",
    "sAMAccountName", "userPrincipalName", "userAccountControl", HIDE_ATTRIBUTE,
    "telephoneNumber", "mobile", "facsimileTelephoneNumber", "homePhone", "pager",
    "ipPhone", "title", "department", "company", "physicalDeliveryOfficeName",
    "streetAddress", "postOfficeBox", "l", "st", "postalCode", "co", "c", "description",
    "info", "employeeID", "member", "groupType", "whenChanged", "uSNChanged",
]

#: attributeSyntax of AD's string attributes (MS-ADTS 3.1.1.2.2.2), whose
#: rangeUpper counts characters.
_STRING_SYNTAXES = "".join(f"(attributeSyntax=2.5.5.{n})" for n in (4, 5, 6, 12))

#: AD's "data NNN" codes in a failed bind (the Win32 error, in hex), as an
#: administrator would want them said.
_BIND_DATA = {
    "52e": "wrong password (or unknown account)",
    "525": "no such account",
    "530": "the account may not log on at this time",
    "531": "the account may not log on from this workstation",
    "532": "the password has expired",
    "533": "the account is disabled",
    "701": "the account has expired",
    "773": "the password must be changed first",
    "775": "the account is locked out",
}


class ADUnreachable(TransientDirectoryError):
    """No domain controller answers at the URL: bad usage until one does (exit 2)."""

    exit_status = 2


def guid_text(raw: bytes) -> str:
    """The canonical string form of a binary objectGUID (MS-DTYP 2.3.4.3)."""
    if len(raw) != 16:
        raise ValueError(f"an objectGUID has 16 bytes, not {len(raw)}")
    return str(uuid.UUID(bytes_le=raw))


def guid_filter_value(text: str) -> str:
    """``text`` (a GUID string) as the escaped octet string a filter needs."""
    return "".join(f"\\{b:02x}" for b in uuid.UUID(text).bytes_le)


def sid_text(raw: bytes) -> str:
    """A binary SID as ``S-1-5-21-...`` (MS-DTYP 2.4.2.2)."""
    if len(raw) < 8:
        raise ValueError("a SID has at least 8 bytes")
    revision, count = raw[0], raw[1]
    if len(raw) != 8 + 4 * count:
        raise ValueError(f"a SID with {count} sub-authorities has {8 + 4 * count} bytes")
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack(f"<{count}I", raw[8:])
    return "S-" + "-".join(str(x) for x in (revision, authority, *subs))


def normalize(entry: Entry) -> Entry:
    """``entry`` with its binary identifiers in text form; ValueError if malformed."""
    for name, convert in (("objectGUID", guid_text), ("parentGUID", guid_text),
                          ("objectSid", sid_text)):
        values = entry.get(name)
        if values:
            entry.set(name, [convert(v).encode() for v in values])
    return entry


def is_disabled(entry: Entry) -> bool:
    value = entry.first("userAccountControl")
    if value is None:
        return False
    try:
        return bool(int(value) & UF_ACCOUNTDISABLE)
    except ValueError:
        return False


def is_mail_enabled(entry: Entry) -> bool:
    return bool(entry.get("mail") or entry.get("proxyAddresses"))


def recipient_class(entry: Entry) -> str | None:
    """``user``, ``contact`` or ``group`` (the most specific), else None."""
    classes = {c.lower() for c in entry.texts("objectClass")}
    if "computer" in classes:
        return None
    for name in ("contact", "group", "user"):
        if name in classes:
            return name
    return None


class RecipientRule:
    """Which AD objects are address-book recipients (decided here, not by the server).

    DirSync strips ``mail`` and ``proxyAddresses`` from deleted objects and
    returns only what changed, so the decision must be made on what dirsync
    knows of the whole object; the same rule serves full reads.
    """

    def __init__(self, hidden_filter: str | None = None) -> None:
        self.hidden_filter_text = hidden_filter
        self._hidden: Predicate | None = None
        if hidden_filter:
            try:
                self._hidden = compile_filter(hidden_filter)
            except FilterError as exc:
                raise UsageError(f"hidden_filter {hidden_filter!r}: {exc}") from exc

    def is_hidden(self, entry: Entry) -> bool:
        if (entry.first(HIDE_ATTRIBUTE) or "").upper() == "TRUE":
            return True
        return self._hidden is not None and self._hidden(entry)

    def why_not(self, entry: Entry) -> str | None:
        """None for a recipient, else the reason it is not one."""
        if recipient_class(entry) is None:
            return "not a user, contact or group"
        if not is_mail_enabled(entry):
            return "no mail or proxyAddresses"
        if recipient_class(entry) == "user" and is_disabled(entry):
            return "a disabled user"
        if self.is_hidden(entry):
            return "hidden from address lists"
        return None

    def __call__(self, entry: Entry) -> bool:
        return self.why_not(entry) is None


class ADDirectory(LDAPDirectory):
    """An Active Directory domain, read through one of its DCs."""

    kind = "ad"

    def __init__(self, url: str, *, name: str | None = None, base: str | None = None,
                 bind_dn: str | None = None, password: str | None = None,
                 tls: TLSOptions | None = None, page_size: int = 1000, window: int = 256,
                 timeout: float = 30.0, hidden_filter: str | None = None,
                 change_reads: str = "dirsync") -> None:
        tls = tls or TLSOptions()
        lowered = url.lower()
        if not (lowered.startswith("ldaps://") or (lowered.startswith("ldap://")
                                                    and tls.starttls)):
            raise UsageError(f"{url}: Active Directory refuses simple binds without TLS: "
                             "give an ldaps:// URL, or ldap:// with starttls = true")
        # AD answers at most 1,000 entries a page (MaxPageSize).
        super().__init__(url, name=name, base=base, bind_dn=bind_dn, password=password,
                         tls=tls, page_size=min(page_size, 1000), window=window,
                         timeout=timeout)
        self.rule = RecipientRule(hidden_filter)
        #: How incremental runs read changes: ``dirsync`` or ``usn`` (uSNChanged).
        self.change_reads = change_reads
        self._root_dse: dict[str, list[bytes]] | None = None
        #: Entries the last read left out, by reason (disabled, hidden...).
        self.left_out: dict[str, int] = {}
        #: Attributes :meth:`read` asks for besides READ_ATTRIBUTES (an
        #: export marker, so that the import knows what it exported).
        self.extra_attributes: list[str] = []
        #: (attribute, connection): objects an export of that connection wrote,
        #: which :meth:`read_guids` does not hand on as changes.
        self.exported_mark: tuple[str, str] | None = None
        #: The only subtree changes may touch; None: no change at all.
        self.write_scope: str | None = None
        self._attribute_types: set[str] | None = None
        self._limits: dict[str, int] | None = None

    # -- connection ------------------------------------------------------
    def _connect(self, factory: Any = None) -> Any:
        try:
            return super()._connect(factory)
        except DirectoryError as error:
            cause = error.__cause__
            if not isinstance(cause, ldap.LDAPError):
                raise
            raise self._explain(cause) from cause

    def _host_port(self) -> tuple[str, int]:
        parsed = urllib.parse.urlsplit(self.server_url)
        default = 636 if parsed.scheme == "ldaps" else 389
        return parsed.hostname or "localhost", parsed.port or default

    def _explain(self, exc: ldap.LDAPError) -> DirectoryError:
        """One clear message for a failed connection or bind."""
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        text = str(info.get("info") or "")
        host, port = self._host_port()
        if isinstance(exc, ldap.INVALID_CREDENTIALS):
            code = next((c for c in _BIND_DATA if f"data {c}" in text.lower()), None)
            reason = _BIND_DATA[code] if code else (text or "invalid credentials")
            who = self.bind_dn or "(anonymous)"
            error = FatalDirectoryError(f"{self.server_url}: the bind as {who!r} was refused: "
                                        f"{reason}" + (f" (AD data {code})" if code else ""))
            error.hint = "check bind_dn and the password (password_env or password_file)"
            return error
        if isinstance(exc, (ldap.STRONG_AUTH_REQUIRED, ldap.CONFIDENTIALITY_REQUIRED)):
            return FatalDirectoryError(f"{self.server_url}: the DC requires TLS for a simple "
                                       "bind: use ldaps:// or starttls = true")
        if isinstance(exc, (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT)):
            return self._diagnose(host, port, exc)
        return directory_error(exc, self.server_url)

    def _diagnose(self, host: str, port: int, exc: ldap.LDAPError) -> DirectoryError:
        """Unreachable or untrusted? libldap says "can't contact" for both."""
        try:
            raw = socket.create_connection((host, port), timeout=min(self.timeout, 10.0))
        except OSError as err:
            reason = err.strerror or str(err)
            return ADUnreachable(f"cannot reach the domain controller at {host}:{port}: "
                                 f"{reason}")
        with raw:
            if not self.server_url.startswith("ldaps"):
                desc = exc.args[0].get("desc") if exc.args and isinstance(exc.args[0], dict) \
                    else exc
                error = FatalDirectoryError(f"{self.server_url}: StartTLS failed: {desc}")
                error.hint = "the DC's certificate may not verify: give ca_file"
                return error
            context = ssl.create_default_context(cafile=self.tls.ca_file)
            if not self.tls.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                with context.wrap_socket(raw, server_hostname=host):
                    pass
            except ssl.SSLCertVerificationError as err:
                error = FatalDirectoryError(
                    f"{self.server_url}: the DC's certificate is not trusted: "
                    f"{err.verify_message}")
                error.hint = ("give the CA that issued it as ca_file (the certificate must "
                              f"also name {host})")
                return error
            except (ssl.SSLError, OSError) as err:
                return ADUnreachable(f"{self.server_url}: the TLS handshake failed: {err}")
        return TransientDirectoryError(f"{self.server_url}: the DC did not answer over LDAP")

    # -- the root DSE ----------------------------------------------------
    def root_dse(self) -> dict[str, list[bytes]]:
        if self._root_dse is None:
            try:
                found = self.conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)",
                                           ["defaultNamingContext", "namingContexts",
                                            "highestCommittedUSN", "dnsHostName",
                                            "schemaNamingContext"])
            except ldap.LDAPError as exc:
                raise self._explain(exc) from exc
            self._root_dse = found[0][1] if found else {}
        return self._root_dse

    def naming_context(self) -> str:
        """The naming context that holds ``base`` (DirSync searches start there)."""
        dse = self.root_dse()
        contexts = [v.decode() for v in dse.get("namingContexts", [])]
        holding = [nc for nc in contexts if self.base and is_under(self.base, nc)]
        if holding:
            return max(holding, key=len)
        default = dse.get("defaultNamingContext")
        if default:
            return default[0].decode()
        raise FatalDirectoryError(f"{self.server_url}: the root DSE names no naming context")

    def effective_base(self) -> str:
        return self.base or self.naming_context()

    # -- reading ---------------------------------------------------------
    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        """The recipients below ``base`` (paged), normalized, with whole ranges."""
        opts = options or ReadOptions()
        filt = f"(&{RECIPIENT_CLASSES}{MAIL_ENABLED}{opts.filter or ''})"
        attrs = opts.attrs if opts.attrs is not None \
            else list(dict.fromkeys([*READ_ATTRIBUTES, *self.extra_attributes]))
        search = ReadOptions(base=opts.base if opts.base is not None else self.effective_base(),
                             scope=opts.scope, filter=filt, attrs=attrs)
        self.left_out = {}
        if search.base and not self.exists(search.base):
            # An empty read would read as "every recipient is gone".
            raise FatalDirectoryError(f"{self.server_url}: the base {search.base} does not "
                                      "exist (renamed or deleted in AD?)")
        for entry in super().read(search):
            if search.base and not is_under(entry.dn, search.base):
                # Only a misbehaving server answers from elsewhere: not ours to take.
                self.rejected.append(EntryError(entry.dn, f"not below {search.base}"))
                continue
            try:
                entry = self.complete(normalize(entry))
            except ValueError as exc:
                self.rejected.append(EntryError(entry.dn, f"malformed identifier: {exc}"))
                continue
            reason = self.rule.why_not(entry)
            if reason is not None:
                self.left_out[reason] = self.left_out.get(reason, 0) + 1
                continue
            yield entry

    def skip_exported(self, attribute: str, connection: str) -> None:
        """Read ``attribute``, the export marker, and leave out of change reads the
        objects that carry ``connection`` there: the contacts the export of the
        same connection wrote are not changes for its import (no loop, and no
        full run in group mode for the export's own writes). A full read still
        hands them on, for the import to count them as its own exports."""
        self.exported_mark = (attribute, connection.casefold())
        if attribute not in self.extra_attributes:
            self.extra_attributes.append(attribute)

    def is_exported(self, entry: Entry) -> bool:
        if self.exported_mark is None:
            return False
        attribute, connection = self.exported_mark
        return any(v.decode("utf-8", "replace").strip().casefold() == connection
                   for v in entry.get(attribute))

    def read_guids(self, guids: Iterable[str], batch: int = 100, *,
                   options: ReadOptions | None = None) -> Iterator[tuple[str, Entry | None]]:
        """Each of ``guids`` with its whole object when it is a recipient below the base,
        else None (gone, moved out, disabled, hidden, no longer mail-enabled, or
        written by the export of this connection: :meth:`skip_exported`).

        What an incremental run needs after DirSync or uSNChanged named the
        objects that changed: their whole, current state, read in batches of
        ``batch`` GUIDs to one search. ``options`` adds a filter (the
        mapping's) and names the attributes, as for :meth:`read`.
        """
        extra = options.filter if options is not None and options.filter else ""
        attrs = options.attrs if options is not None and options.attrs is not None \
            else list(READ_ATTRIBUTES)
        if "*" not in attrs:
            attrs = list(dict.fromkeys([*attrs, *self.extra_attributes]))
        pending = list(dict.fromkeys(g.lower() for g in guids))
        for start in range(0, len(pending), batch):
            chunk = pending[start:start + batch]
            terms = "".join(f"(objectGUID={guid_filter_value(g)})" for g in chunk)
            search = ReadOptions(base=self.effective_base(),
                                 filter=f"(&{RECIPIENT_CLASSES}{extra}(|{terms}))",
                                 attrs=attrs)
            found: dict[str, Entry] = {}
            for entry in super().read(search):
                try:
                    entry = self.complete(normalize(entry))
                except ValueError:
                    continue
                guid = entry.first("objectGUID")
                if guid is not None and self.rule(entry) and not self.is_exported(entry):
                    found[guid] = entry
            for guid in chunk:
                yield guid, found.get(guid)

    def complete(self, entry: Entry) -> Entry:
        """``entry`` with every ranged attribute (``member;range=0-1499``) read whole."""
        if not any(";" in name for name in entry.attrs):
            return entry
        whole = complete_ranges(entry.dn, entry.attrs, self._fetch_range)
        return Entry(entry.dn, whole)

    def _fetch_range(self, dn: str, attr: str) -> dict[str, list[bytes]]:
        # On the writer's connection: the reader's is in the middle of a paged search.
        try:
            found = self.conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
        except ldap.NO_SUCH_OBJECT:
            return {}
        except ldap.LDAPError as exc:
            raise self._explain(exc) from exc
        return next((attrs for found_dn, attrs in found if found_dn is not None), {})

    def write_ldif(self, options: ReadOptions, stream: Any, writer: Any) -> int | None:
        """Never the compiled writer: entries need their GUIDs and ranges fixed first."""
        return None

    def read_below(self, options: ReadOptions) -> Iterator[Entry]:
        """Every object ``options`` finds, recipient or not, normalized: what an
        export must see of its container (a name any object holds is taken)."""
        for entry in super().read(options):
            try:
                yield normalize(entry)
            except ValueError as exc:
                self.rejected.append(EntryError(entry.dn, f"malformed identifier: {exc}"))

    def attribute_types(self) -> set[str] | None:
        """The schema's attribute names (cached: AD's schema is large)."""
        if self._attribute_types is None:
            self._attribute_types = super().attribute_types()
        return self._attribute_types

    def length_limits(self) -> dict[str, int]:
        """Lower-case attribute name -> its ``rangeUpper`` (characters), for the
        string attributes the schema bounds (``cn`` and ``sn`` at 64...)."""
        if self._limits is None:
            schema = self.root_dse().get("schemaNamingContext")
            limits: dict[str, int] = {}
            if schema:
                options = ReadOptions(base=schema[0].decode(), scope="one",
                                      filter="(&(objectClass=attributeSchema)(rangeUpper=*)"
                                             f"(|{_STRING_SYNTAXES}))",
                                      attrs=["lDAPDisplayName", "rangeUpper"])
                for entry in LDAPDirectory.read(self, options):
                    name, upper = entry.first("lDAPDisplayName"), entry.first("rangeUpper")
                    if name and upper and upper.isdigit():
                        limits[name.lower()] = int(upper)
            self._limits = limits
        return self._limits

    # -- writing ---------------------------------------------------------
    def outside_scope(self, change: Change) -> str | None:
        """Why ``change`` may not be sent (a DN outside the write scope), else None."""
        if self.write_scope is None:
            return ("the ad kind writes only below a connection's foreign_container, "
                    "and none is set")
        for dn in dict.fromkeys([change.dn, change.target_dn]):
            # The container itself may be created, never changed otherwise.
            inside = is_under(dn, self.write_scope) and (
                change.kind == "add" or not same_dn(dn, self.write_scope))
            if not inside:
                return (f"{dn} is outside the foreign_container {self.write_scope}: "
                        "dirsync writes nothing there")
        return None

    def _send(self, change: Change) -> int:
        why = self.outside_scope(change)
        if why is not None:
            # Refused as the server would refuse it: the change fails, the run goes on.
            raise ldap.UNWILLING_TO_PERFORM({"desc": "refused by dirsync", "info": why})
        return super()._send(change)
