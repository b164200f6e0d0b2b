"""The ``ldap`` kind: an LDAP server by URL (RFC 4516), through python-ldap.

Reads are paged (RFC 2696) and streamed a page at a time; writes are
pipelined: up to ``window`` operations are outstanding on the connection,
and an operation waits only for the outstanding ones it depends on (its
parent's add, an earlier change to the same entry).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import ldap
import ldap.controls
import ldap.modlist
import ldap.schema
import ldapurl

from dirsync.directories.base import ApplyResult, DirectoryBase, ReadOptions
from dirsync.directories.ldapresults import ERROR_CLASSES as _ERRORS
from dirsync.directories.ldapresults import (
    directory_error,
    entry_error,
    is_connection_error,
)
from dirsync.directories.ldapresults import message as _message
from dirsync.entry import Entry, display_dn, normalize_dn, parent_dn
from dirsync.errors import (
    DirectoryError,
    EntryError,
    FatalDirectoryError,
    TransientDirectoryError,
    UsageError,
)
from dirsync.ldif.changes import Change, Control, Mod
from dirsync.ldif.io import LDIFWriter
from dirsync.wording import plural

try:  # the compiled LDIF reader; optional (see setup.py)
    from dirsync.ldif import _ldifstream
except ImportError:  # pragma: no cover - built wherever the test suite runs
    _ldifstream = None  # type: ignore[assignment]

log = logging.getLogger("dirsync.ldap")

_SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}
_URL_SCOPES = {ldapurl.LDAP_SCOPE_BASE: "base", ldapurl.LDAP_SCOPE_ONELEVEL: "one",
               ldapurl.LDAP_SCOPE_SUBTREE: "sub"}
_MOD_OPS = {"add": ldap.MOD_ADD, "delete": ldap.MOD_DELETE, "replace": ldap.MOD_REPLACE,
            "increment": ldap.MOD_INCREMENT}

@dataclass
class TLSOptions:
    ca_file: str | None = None
    verify: bool = True
    starttls: bool = False



class LDAPDirectory(DirectoryBase):
    """An LDAP server: ``ldap://``, ``ldaps://`` or ``ldapi://`` with RFC 4516 parts."""

    kind = "ldap"

    def __init__(self, url: str, *, name: str | None = None, base: str | None = None,
                 bind_dn: str | None = None, password: str | None = None,
                 tls: TLSOptions | None = None, page_size: int = 1000, window: int = 256,
                 timeout: float = 30.0) -> None:
        super().__init__(name or url)
        try:
            parsed = ldapurl.LDAPUrl(url)
        except ValueError as exc:
            raise UsageError(f"not an LDAP URL: {url!r} ({exc})") from exc
        if parsed.urlscheme not in ("ldap", "ldaps", "ldapi"):
            raise UsageError(f"not an LDAP URL: {url!r}")
        hostport = parsed.hostport
        if parsed.urlscheme == "ldapi":
            # LDAPUrl hands back the socket path decoded; libldap wants it %-encoded.
            hostport = urllib.parse.quote(hostport, safe="")
        self.server_url = f"{parsed.urlscheme}://{hostport}"
        self.url = url
        self.base = base if base is not None else (parsed.dn or "")
        self.url_attrs = list(parsed.attrs) if parsed.attrs else None
        self.url_scope = _URL_SCOPES.get(parsed.scope) if parsed.scope is not None else None
        self.url_filter = parsed.filterstr or None
        self.bind_dn = bind_dn
        self.password = password
        self.tls = tls or TLSOptions()
        self.page_size = page_size
        self.window = max(1, window)
        self.timeout = timeout
        self._conn: Any = None
        self._native_ok: bool | None = None  # see write_ldif
        self._reader: Any = None  # the connection of read(), see there
        self._reading = 0  # reads in progress

    # -- connection ------------------------------------------------------
    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self, factory: Any = None) -> Any:
        """A bound connection; ``factory`` makes it (an LDAPObject subclass)."""
        try:
            conn = factory(self.server_url) if factory else ldap.initialize(self.server_url)
            conn.protocol_version = 3
            conn.set_option(ldap.OPT_REFERRALS, 0)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, self.timeout)
            # A signal (Ctrl-C: dirsync.interrupt) must not fail the wait for a
            # result with "Can't contact LDAP server: Interrupted system call":
            # libldap waits on, and the stop is seen once the result is in.
            conn.set_option(ldap.OPT_RESTART, ldap.OPT_ON)
            if self.server_url.startswith("ldaps") or self.tls.starttls:
                conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT,
                                ldap.OPT_X_TLS_DEMAND if self.tls.verify
                                else ldap.OPT_X_TLS_NEVER)
                if self.tls.ca_file:
                    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, self.tls.ca_file)
                conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
            if self.tls.starttls and self.server_url.startswith("ldap://"):
                conn.start_tls_s()
            if self.server_url.startswith("ldapi") and not self.bind_dn:
                conn.sasl_external_bind_s()
            else:
                # An anonymous bind when no DN is given: it opens the
                # connection (and the TLS session) now, so errors surface here.
                conn.simple_bind_s(self.bind_dn or "", self.password or "")
            return conn
        except ldap.LDAPError as exc:
            error = directory_error(exc, self.server_url)
            if isinstance(exc, ldap.INVALID_CREDENTIALS):
                # RFC 4511 invalidCredentials (49): the server answered, so
                # TLS worked; the DN or the password is wrong.
                error = FatalDirectoryError(
                    f"{self.server_url}: invalid credentials: the server refused the bind "
                    f"as {self.bind_dn or '(anonymous)'!s} (wrong bind DN or password)")
                error.hint = ("check --bind-dn and the password (--password-file, "
                              "$DIRSYNC_PASSWORD, or bind_dn and password_file in the config)")
            elif self.server_url.startswith("ldaps") or self.tls.starttls:
                # libldap reports a certificate that does not verify as
                # "can't contact": say what it most likely is.
                error.hint = ("if the server is up, its certificate may not verify: give "
                              "--ca-file (or ca_file in the config)")
            raise error from exc

    def close(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                try:
                    conn.unbind_s()
                except ldap.LDAPError:
                    pass
        self._conn = self._reader = None
        self._native_ok = None

    # -- reading ---------------------------------------------------------
    def _search(self, options: ReadOptions | None) -> tuple[str, int, str, list[str] | None]:
        """Base, scope, filter and attributes: the options', else the URL's."""
        opts = options or ReadOptions()
        base = opts.base if opts.base is not None else self.base
        scope = _SCOPES[opts.scope or self.url_scope or "sub"]
        filt = opts.filter or self.url_filter or "(objectClass=*)"
        attrs = opts.attrs if opts.attrs is not None else self.url_attrs
        return base, scope, filt, attrs

    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        """Paged search (RFC 2696), streamed.

        Entries are taken one message at a time as the server sends them:
        waiting for a whole page first (libldap chains it, python-ldap then
        converts it in one go) measured twice as slow, and a reader thread
        handing entries over lost more to the GIL than it gained. The server
        goes on filling the socket while the caller works on an entry, and
        at most one page is in flight: memory stays flat.

        Reads have a connection of their own. The server forgets a paged
        search when anything else is done on its connection between two
        pages ("paged results cookie is invalid"), and a caller may well
        write while it reads; a read inside another read opens one more.
        """
        base, scope, filt, attrs = self._search(options)
        nested = self._reading > 0
        if nested:
            conn = self._connect()
        else:
            if self._reader is None:
                self._reader = self._connect()
            conn = self._reader
        self._reading += 1
        page = ldap.controls.SimplePagedResultsControl(True, size=self.page_size, cookie="")
        from_server = Entry.from_server
        done = ldap.RES_SEARCH_RESULT
        msgid: int | None = None
        try:
            while True:
                msgid = conn.search_ext(base, scope, filt, attrs, serverctrls=[page])
                while True:
                    kind, data, _, ctrls = conn.result3(msgid, 0, self.timeout)
                    if kind == done:
                        msgid = None
                        break
                    for dn, attributes in data:
                        if dn is not None:  # skip search references
                            yield from_server(display_dn(dn), attributes)
                cookie = next((c.cookie for c in ctrls if c.controlType == page.controlType),
                              b"")
                if not cookie:
                    return
                page.cookie = cookie
        except ldap.NO_SUCH_OBJECT:
            return
        except ldap.LDAPError as exc:
            msgid = None
            raise directory_error(exc, self.server_url) from exc
        finally:
            self._reading -= 1
            if nested:
                try:
                    conn.unbind_s()
                except ldap.LDAPError:
                    pass
            elif msgid is not None:
                # The caller stopped early: the rest of the page must not
                # reach a later result() on this connection.
                try:
                    conn.abandon(msgid)
                except ldap.LDAPError:
                    pass

    def write_ldif(self, options: ReadOptions, stream: IO[str],
                   writer: LDIFWriter) -> int | None:
        """The entries ``read`` would give, written to ``stream`` as ``writer``
        would write them, by the compiled reader (:mod:`dirsync.ldif._ldifstream`):
        no Python object per entry. Returns how many entries were written, or
        None, having written nothing, when that reader cannot be used here
        (not built, a stream without a file descriptor, a connection it cannot
        vouch for); the caller then writes through ``read``.
        """
        if _ldifstream is None or writer.line_sep != "\n":
            return None
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        conn = self.conn
        if self._native_ok is None:
            # The handle the extension reads must be this connection's own
            # (a python-ldap laid out otherwise is refused by its type check).
            try:
                self._native_ok = (_ldifstream.socket_of(conn._l)
                                   == conn.get_option(ldap.OPT_DESC))
            except (TypeError, ValueError, AttributeError):
                self._native_ok = False
        if not self._native_ok:
            return None
        base, scope, filt, attrs = self._search(options)
        page = ldap.controls.SimplePagedResultsControl(True, size=self.page_size, cookie="")
        stream.flush()
        count = 0
        while True:
            try:
                msgid = conn.search_ext(base, scope, filt, attrs, serverctrls=[page])
            except ldap.LDAPError as exc:
                raise directory_error(exc, self.server_url) from exc
            lock = conn._ldap_object_lock
            lock.acquire()
            try:
                written, rc, desc, info, cookie = _ldifstream.write_page(
                    conn._l, msgid, fd, writer.cols, self.timeout, writer.always_base64)
            except BaseException:
                conn._l.abandon_ext(msgid)
                raise
            finally:
                lock.release()
            count += written
            if rc == -1:
                conn.abandon(msgid)
                raise TransientDirectoryError(f"{self.server_url}: no answer in "
                                              f"{self.timeout}s")
            if rc == ldap.NO_SUCH_OBJECT.errnum:
                return count
            if rc != 0:
                error = _ERRORS.get(rc, ldap.LDAPError)({"result": rc, "desc": desc,
                                                          "info": info})
                raise directory_error(error, self.server_url)
            if not cookie:
                return count
            page.cookie = cookie

    def get(self, dn: str, attrs: list[str] | None = None) -> Entry | None:
        try:
            found = self.conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs)
        except ldap.NO_SUCH_OBJECT:
            return None
        except ldap.LDAPError as exc:
            raise directory_error(exc, self.server_url) from exc
        return Entry(display_dn(found[0][0]), found[0][1]) if found else None

    def exists(self, dn: str) -> bool:
        return self.get(dn, ["1.1"]) is not None

    def attribute_types(self) -> set[str] | None:
        """Lower-case names and OIDs of every attribute type the server knows."""
        try:
            sub_dn = self.conn.search_subschemasubentry_s(self.base or "")
            if sub_dn is None:
                return None
            found = self.conn.read_subschemasubentry_s(sub_dn, attrs=["attributeTypes"])
        except ldap.LDAPError as exc:
            raise directory_error(exc, self.server_url) from exc
        schema = ldap.schema.SubSchema(found, check_uniqueness=0)
        names: set[str] = set()
        for oid in schema.listall(ldap.schema.AttributeType):
            at = schema.get_obj(ldap.schema.AttributeType, oid)
            names.add(oid.lower())
            names.update(n.lower() for n in (at.names or ()))
        return names

    # -- writing ---------------------------------------------------------
    def _send(self, change: Change) -> int:
        conn = self.conn
        # The record's own controls, criticality and value as the file gives
        # them (RFC 4511 section 4.1.11): the server decides; one it does not
        # know and that is critical fails the record (unavailableCriticalExtension).
        ctrls = _server_controls(change.controls)
        if change.kind == "add":
            return conn.add_ext(change.dn, list((change.attrs or {}).items()),
                                serverctrls=ctrls)
        if change.kind == "delete":
            return conn.delete_ext(change.dn, serverctrls=ctrls)
        if change.kind == "modify":
            return conn.modify_ext(change.dn, _modlist(change.mods), serverctrls=ctrls)
        return conn.rename(change.dn, change.newrdn, change.newsuperior,
                           1 if change.deleteoldrdn else 0, serverctrls=ctrls)

    def apply(self, changes: Iterable[Change], *,
              stop_on_error: bool = True) -> Iterator[ApplyResult]:
        """Pipelined writes; see :class:`Pipeline`."""
        return Pipeline(self, stop_on_error).run(changes)


def _server_controls(controls: list[Control]) -> list[ldap.controls.LDAPControl] | None:
    if not controls:
        return None
    return [ldap.controls.LDAPControl(c.oid, c.critical, encodedControlValue=c.value)
            for c in controls]


def _modlist(mods: list[Mod]) -> list[tuple[int, str, list[bytes] | None]]:
    return [(_MOD_OPS[m.op], m.attr, list(m.values) or None) for m in mods]


class Pipeline:
    """Up to ``window`` outstanding writes on one connection.

    Before an operation is sent, every outstanding operation it depends on
    (same entry, its parent, or anything below an entry being renamed or
    deleted) must have completed, so the server never sees them out of order.

    With ``stop_on_error``, only adds are sent ahead; when one fails, the adds
    after it that the server had already applied are deleted again (they are
    fresh entries this pipeline created), so nothing after the failed record
    stays applied. Other change kinds are sent one at a time in that mode.
    """

    def __init__(self, directory: LDAPDirectory, stop_on_error: bool) -> None:
        self.directory = directory
        self.stop_on_error = stop_on_error
        # msgid -> (seq, change, the entries it occupies: see _keys)
        self.outstanding: dict[int, tuple[int, Change, list[str]]] = {}
        self.busy: dict[str, int] = {}  # normalized DN -> msgid touching it
        self.done: dict[int, ApplyResult] = {}
        self.failed_seq: int | None = None
        self.applied_after_failure: list[Change] = []
        self._next_out = 0
        self._feed_failed = False

    def _keys(self, change: Change) -> list[str]:
        """The entries this change occupies while it is outstanding."""
        keys = [normalize_dn(change.dn)]
        if change.kind == "modrdn":
            keys.append(normalize_dn(change.target_dn))
        return keys

    def _conflicts(self, change: Change, keys: list[str]) -> bool:
        """Must ``change`` (occupying ``keys``) wait for what is outstanding?"""
        if change.kind in ("modrdn", "delete"):
            # Renames and deletes act on whole subtrees: let the pipe drain.
            return bool(self.outstanding)
        busy = self.busy
        if keys[0] in busy:
            return True
        # A child waits for its parent's add; siblings do not wait for each other.
        return change.kind == "add" and normalize_dn(parent_dn(change.dn)) in busy

    def _collect(self) -> None:
        """Wait for one result and file it."""
        conn = self.directory.conn
        try:
            kind, _, msgid, _ = conn.result3(ldap.RES_ANY, 1, self.directory.timeout)
            error: EntryError | None = None
        except ldap.TIMEOUT:
            raise TransientDirectoryError(f"{self.directory.server_url}: no answer in "
                                          f"{self.directory.timeout}s") from None
        except ldap.LDAPError as exc:
            # Any result the server gives for one operation is that record's
            # failure; only a broken connection (or an answer to no
            # operation of ours, a notice of disconnection) ends the run.
            msgid = exc.args[0].get("msgid") if exc.args and isinstance(exc.args[0], dict) \
                else None
            if is_connection_error(exc) or msgid not in self.outstanding:
                raise TransientDirectoryError(
                    f"{self.directory.server_url}: {_message(exc)}") from exc
            error = entry_error(exc, self.outstanding[msgid][1], self.directory.server_url)
        seq, change, keys = self.outstanding.pop(msgid)
        for key in keys:
            if self.busy.get(key) == msgid:
                del self.busy[key]
        self.done[seq] = ApplyResult(change, error)

    def run(self, changes: Iterable[Change]) -> Iterator[ApplyResult]:
        self._feed_failed = False
        try:
            yield from self._run(changes)
        except Exception as exc:
            if self._feed_failed and self.failed_seq is None:
                # The caller's changes failed (a source that went away), not
                # this connection: what was sent still gets its answer.
                try:
                    while self.outstanding:
                        self._collect()
                except DirectoryError:
                    pass
            if self.failed_seq is None and (self._feed_failed
                                            or isinstance(exc, DirectoryError)):
                yield from self._lost()
            raise

    def _lost(self) -> Iterator[ApplyResult]:
        """After the connection is lost: in order, what the server answered and
        not handed out yet, then each change sent without an answer. A change
        never sent is not among them."""
        unanswered = {seq: change for seq, change, _ in self.outstanding.values()}
        index = self._next_out
        while index in self.done or index in unanswered:
            result = self.done.pop(index, None)
            if result is None:
                change = unanswered[index]
                result = ApplyResult(change, EntryError(
                    change.dn, "sent, but the connection was lost before the answer: it may "
                    "or may not be applied; the next run finds out", result="unknown",
                    line=change.line), unknown=True)
            yield result
            index += 1

    def _run(self, changes: Iterable[Change]) -> Iterator[ApplyResult]:
        window = self.directory.window
        next_out = 0
        seq = 0
        feed = iter(changes)
        while True:
            try:
                change = next(feed)
            except StopIteration:
                break
            except Exception:
                self._feed_failed = True
                raise
            if self.stop_on_error and change.kind != "add":
                while self.outstanding:
                    self._collect()
            if len(self.outstanding) >= window:
                # Down to half the window in one go: one wait per result,
                # and no empty polls in between (each one is a system call).
                while len(self.outstanding) > window // 2:
                    self._collect()
            keys = self._keys(change)
            while self.outstanding and self._conflicts(change, keys):
                self._collect()
            yield from self._release(next_out)
            next_out = self._next_out
            if self.failed_seq is not None:
                break
            try:
                msgid = self.directory._send(change)
            except ldap.LDAPError as exc:
                self.done[seq] = ApplyResult(
                    change, entry_error(exc, change, self.directory.server_url))
            else:
                self.outstanding[msgid] = (seq, change, keys)
                for key in keys:
                    self.busy[key] = msgid
            seq += 1
        while self.outstanding:
            self._collect()
        yield from self._release(next_out, final=True)
        self._undo_after_failure()

    def _release(self, start: int, final: bool = False) -> Iterator[ApplyResult]:
        """Yield finished results in order; stop at a gap or after a failure."""
        index = start
        while index in self.done:
            result = self.done.pop(index)
            index += 1
            if self.failed_seq is not None:
                # Results after the failure: remember applied ones to undo them.
                if result.ok:
                    self.applied_after_failure.append(result.change)
                continue
            yield result
            if not result.ok and self.stop_on_error:
                self.failed_seq = index - 1
        self._next_out = index

    def _undo_after_failure(self) -> None:
        if not self.applied_after_failure:
            return
        conn = self.directory.conn
        # Children before parents: the reverse of the order they were added.
        for change in reversed(self.applied_after_failure):
            try:
                conn.delete_s(change.dn)
            except ldap.LDAPError as exc:  # pragma: no cover - logged, nothing else to do
                log.error("could not take back %s after the failed record: %s", change.dn,
                          _message(exc))
        log.info("took back %s sent ahead of the failed record",
                 plural(len(self.applied_after_failure), "add"))
