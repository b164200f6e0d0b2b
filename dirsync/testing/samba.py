"""A real Samba Active Directory domain controller on loopback, for tests.

Same habits as :mod:`dirsync.testing.slapd`: everything lives in one short
temporary folder (the provisioned databases, ``etc/smb.conf``, the TLS
material, the log, the PID file), the server runs in the foreground
(``samba -i -M single``), readiness is polled over ldaps, and it is
stopped by its PID. Nothing of the machine's own Samba (``/etc/samba``,
``/var/lib/samba``, ``/var/log/samba``) is read or written: provisioning
gets ``--targetdir`` and every path option points into the folder.

Samba listens on the fixed ports 389 and 636 of 127.0.0.1, so one DC serves
a whole test session and each test works below an OU of its own.

Simple binds need TLS, and the certificate Samba makes for itself names
only the host name, so the harness gives Samba a CA and a certificate for
127.0.0.1 of its own (:mod:`dirsync.testing.tlscerts`).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ldap
import ldap.modlist

from dirsync.testing.tlscerts import TLSMaterial, make_tls_material

#: userAccountControl flags (MS-ADTS 2.2.16).
UF_ACCOUNTDISABLE = 0x2
UF_NORMAL_ACCOUNT = 0x200
#: The control access right "Replicating Directory Changes" (DS-Replication-Get-Changes).
GET_CHANGES = "get-changes"

#: Held (flock) by the test session whose DC runs: the ports are the
#: machine's, so a second session waits for the first to stop its DC.
LOCK_PATH = Path(tempfile.gettempdir()) / "dirsync-samba-dc.lock"
#: The prefix of every DC's folder, where a leftover DC is found by its PID file.
FOLDER_PREFIX = "dsad"

#: Run by the system's Python, which has Samba's bindings: adds records to
#: sam.ldb in one transaction (LDAP adds cost a transaction each).
_BULK_ADD = r"""
import json, sys
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=sys.argv[2], session_info=system_session(), lp=lp)
with open(sys.argv[3], encoding="utf-8") as stream:
    records = json.load(stream)
db.transaction_start()
try:
    for dn, attrs in records:
        db.add({"dn": dn, **attrs})
except BaseException:
    db.transaction_cancel()
    raise
db.transaction_commit()
"""

PACKAGES = ("samba", "samba-ad-dc", "samba-ad-provision", "samba-dsdb-modules", "winbind")
_ids = itertools.count(1)


class SambaMissing(RuntimeError):
    """Samba's AD DC is not installed on this machine."""


def find_samba() -> tuple[str, str] | None:
    """The ``samba`` and ``samba-tool`` programs, or None."""
    server = shutil.which("samba") or ("/usr/sbin/samba" if os.access("/usr/sbin/samba", os.X_OK)
                                       else None)
    tool = shutil.which("samba-tool")
    if server is None or tool is None:
        return None
    return server, tool


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_leftover_dcs() -> None:
    """Stop the DCs this harness started in sessions that were killed.

    Found by the PID file in a DC folder; a process is stopped only when it
    runs ``samba`` in that folder (the harness starts it there; its command
    line cannot tell, as Samba rewrites its process title), since a PID may
    have been reused.
    """
    for pid_file in Path("/tmp").glob(f"{FOLDER_PREFIX}*/samba.pid"):
        folder = pid_file.parent
        try:
            pid = int(pid_file.read_text().split()[0])
            exe = os.readlink(f"/proc/{pid}/exe")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, ValueError, IndexError):
            continue
        if Path(exe).name != "samba" or Path(cwd) != folder:
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _running(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    """A live process (a zombie, whose parent has gone, has no executable)."""
    try:
        os.readlink(f"/proc/{pid}/exe")
        return True
    except OSError:
        return False


def unicode_pwd(password: str) -> bytes:
    """An AD password as ``unicodePwd`` takes it (MS-ADTS 3.1.1.3.1.5.1): quoted, UTF-16-LE."""
    return f'"{password}"'.encode("utf-16-le")


@dataclass
class SambaDC:
    """One provisioned Samba AD DC.

    :meth:`start` provisions the domain (once per folder) and starts the
    server; ``timings`` records how long each step took, in seconds.
    """

    realm: str = "DIRSYNC.TEST"
    domain: str = "DIRSYNC"
    host_name: str = "dc1"
    admin_password: str = "Dirsync-Adm1n!"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX,
                                                                        dir="/tmp")))
    #: Seconds to wait for another session's DC to stop.
    lock_timeout: float = 900.0
    timings: dict[str, float] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tls: TLSMaterial | None = field(default=None, init=False, repr=False)
    _lock: IO[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        found = find_samba()
        if found is None:
            raise SambaMissing("Samba's AD DC is not installed (Debian: apt-get install "
                               + " ".join(PACKAGES) + ")")
        self.samba, self.samba_tool = found

    # -- addresses -------------------------------------------------------
    @property
    def base_dn(self) -> str:
        """The domain's naming context."""
        return ",".join(f"DC={part}" for part in self.realm.lower().split("."))

    @property
    def url(self) -> str:
        return "ldaps://127.0.0.1"

    @property
    def admin_upn(self) -> str:
        return f"Administrator@{self.realm.lower()}"

    @property
    def smb_conf(self) -> Path:
        return self.workdir / "etc" / "smb.conf"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.workdir / "samba.log"

    # -- provisioning ----------------------------------------------------
    def _options(self) -> list[str]:
        """smb.conf options that keep the DC inside its folder and on loopback."""
        tls = self._tls
        assert tls is not None
        options = {
            "interfaces": "lo",
            "bind interfaces only": "yes",
            "server services": "ldap",
            "log file": str(self.log_path),
            "pid directory": str(self.workdir),
            "tls enabled": "yes",
            "tls keyfile": str(tls.key_file),
            "tls certfile": str(tls.cert_file),
            "tls cafile": str(tls.ca_file),
        }
        return [f"--option={key}={value}" for key, value in options.items()]

    def provision(self) -> None:
        if self.smb_conf.exists():
            return
        started = time.monotonic()
        tls_dir = self.workdir / "tls"
        tls_dir.mkdir(parents=True, exist_ok=True)
        self._tls = make_tls_material(tls_dir)
        self.timings["tls"] = time.monotonic() - started
        started = time.monotonic()
        result = subprocess.run(
            [self.samba_tool, "domain", "provision", "--server-role=dc", "--dns-backend=NONE",
             "--use-rfc2307", "--host-ip=127.0.0.1", f"--host-name={self.host_name}",
             f"--realm={self.realm}", f"--domain={self.domain}",
             f"--adminpass={self.admin_password}", f"--targetdir={self.workdir}",
             *self._options()],
            check=False, capture_output=True, text=True, env=self._env())
        if result.returncode != 0:
            raise RuntimeError("samba-tool domain provision failed:\n"
                               + (result.stderr or result.stdout)[-4000:])
        self.timings["provision"] = time.monotonic() - started

    def _env(self) -> dict[str, str]:
        # Kerberos must not reach for the machine's /etc/krb5.conf.
        env = dict(os.environ)
        env["KRB5_CONFIG"] = str(self.workdir / "private" / "krb5.conf")
        return env

    # -- life cycle ------------------------------------------------------
    def _take_ports(self) -> None:
        """Wait for the machine's one DC slot; clear a DC left by a killed session."""
        started = time.monotonic()
        self._lock = open(LOCK_PATH, "ab")  # noqa: SIM115 - held until stop()
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > self.lock_timeout:
                    self._release()
                    raise RuntimeError(f"another test session has held the Samba DC for "
                                       f"{self.lock_timeout:.0f}s ({LOCK_PATH})") from None
                time.sleep(0.5)
        self.timings["wait"] = time.monotonic() - started
        if port_open(389) or port_open(636):
            # The lock is free, so whoever holds the ports is not a running
            # session: a DC of this harness whose session was killed, or a stranger.
            stop_leftover_dcs()
        for port in (389, 636):
            if port_open(port):
                self._release()
                raise RuntimeError(f"port {port} of 127.0.0.1 is taken by another LDAP "
                                   "server; Samba's ports are fixed, so the DC cannot start")

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def start(self, timeout: float = 60.0) -> SambaDC:
        self._take_ports()
        try:
            self._start(timeout)
        except BaseException:
            self._release()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.provision()
        started = time.monotonic()
        with open(self.workdir / "samba.out", "ab") as log:
            self._proc = subprocess.Popen(
                [self.samba, "-i", "-M", "single", "-s", str(self.smb_conf)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self._env(),
                cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                out = (self.workdir / "samba.out").read_text(errors="replace")[-4000:]
                self._proc = None
                raise RuntimeError(f"samba exited early:\n{out}")
            try:
                self.connect().unbind_s()
                break
            except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.UNAVAILABLE):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"samba did not answer on {self.url} in {timeout}s")
                time.sleep(0.1)
        self.timings["start"] = time.monotonic() - started

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                os.kill(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(self._proc.pid, signal.SIGKILL)
                    self._proc.wait()
            self._proc = None
        self._release()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SambaDC:  # noqa: PYI034 - as SlapdServer
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- helpers for tests -----------------------------------------------
    def connect(self, who: str | None = None, password: str | None = None) -> Any:
        """An ldaps connection bound as ``who`` (default: the Administrator)."""
        conn = ldap.initialize(self.url)
        conn.protocol_version = 3
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5.0)
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(self.ca_file))
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        conn.simple_bind_s(who or self.admin_upn,
                           password if password is not None else self.admin_password)
        return conn

    def _add(self, dn: str, attrs: dict[str, list[bytes]]) -> str:
        conn = self.connect()
        try:
            conn.add_s(dn, ldap.modlist.addModlist(attrs))
        finally:
            conn.unbind_s()
        return dn

    def modify(self, dn: str, changes: list[tuple[int, str, list[bytes] | None]]) -> None:
        conn = self.connect()
        try:
            conn.modify_s(dn, changes)
        finally:
            conn.unbind_s()

    def rename(self, dn: str, new_rdn: str, new_parent: str | None = None) -> None:
        conn = self.connect()
        try:
            conn.rename_s(dn, new_rdn, new_parent, 1)
        finally:
            conn.unbind_s()

    def delete(self, dn: str) -> None:
        conn = self.connect()
        try:
            conn.delete_s(dn)
        finally:
            conn.unbind_s()

    def guid(self, dn: str) -> str:
        """The canonical string form of an object's objectGUID."""
        conn = self.connect()
        try:
            found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["objectGUID"])
        finally:
            conn.unbind_s()
        return str(uuid.UUID(bytes_le=found[0][1]["objectGUID"][0]))

    def add_ou(self, name: str | None = None, parent: str | None = None) -> str:
        """A fresh organizationalUnit (unique name unless given); its DN."""
        name = name or f"t{os.getpid()}-{next(_ids)}"
        return self._add(f"OU={name},{parent or self.base_dn}",
                         {"objectClass": [b"organizationalUnit"], "ou": [name.encode()]})

    def add_user(self, parent: str, name: str, *, mail: str | None = None,
                 proxies: Sequence[str] = (), disabled: bool = False,
                 password: str = "Us3r-Pass!word", **extra: str | list[str]) -> str:
        """An enabled (or disabled) user with a password, below ``parent``."""
        flags = UF_NORMAL_ACCOUNT | (UF_ACCOUNTDISABLE if disabled else 0)
        sam = self.account_name(name)
        attrs: dict[str, list[bytes]] = {
            "objectClass": [b"top", b"person", b"organizationalPerson", b"user"],
            "cn": [name.encode()],
            "sAMAccountName": [sam.encode()],
            "userPrincipalName": [f"{sam}@{self.realm.lower()}".encode()],
            "unicodePwd": [unicode_pwd(password)],
            "userAccountControl": [str(flags).encode()],
        }
        self._fill(attrs, mail, proxies, extra)
        return self._add(f"CN={name},{parent}", attrs)

    def add_contact(self, parent: str, name: str, *, mail: str | None = None,
                    proxies: Sequence[str] = (),
                    **extra: str | list[str]) -> str:
        attrs: dict[str, list[bytes]] = {
            "objectClass": [b"top", b"person", b"organizationalPerson", b"contact"],
            "cn": [name.encode()],
        }
        self._fill(attrs, mail, proxies, extra)
        return self._add(f"CN={name},{parent}", attrs)

    def add_group(self, parent: str, name: str, *, members: Sequence[str] = (),
                  mail: str | None = None, proxies: Sequence[str] = (),
                  **extra: str | list[str]) -> str:
        attrs: dict[str, list[bytes]] = {
            "objectClass": [b"top", b"group"],
            "cn": [name.encode()],
            "sAMAccountName": [self.account_name(name).encode()],
        }
        if members:
            attrs["member"] = [m.encode() for m in members]
        self._fill(attrs, mail, proxies, extra)
        return self._add(f"CN={name},{parent}", attrs)

    @staticmethod
    def account_name(name: str) -> str:
        """A sAMAccountName unique in the domain (at most 20 characters)."""
        stem = "".join(ch for ch in name if ch.isalnum())[:8] or "x"
        return f"{stem}{os.getpid() % 100000}x{next(_ids)}"

    @staticmethod
    def _fill(attrs: dict[str, list[bytes]], mail: str | None, proxies: Sequence[str],
              extra: dict[str, str | list[str]]) -> None:
        if mail:
            attrs["mail"] = [mail.encode()]
        if proxies:
            attrs["proxyAddresses"] = [p.encode() for p in proxies]
        for key, value in extra.items():
            values = [value] if isinstance(value, str) else list(value)
            attrs[key] = [v.encode() for v in values]

    def bulk_add(self, records: Sequence[tuple[str, dict[str, list[str]]]]) -> None:
        """Add many objects at once, through Samba's own bindings on sam.ldb, in
        one transaction: for tests and benchmarks that need thousands (an LDAP
        add is a transaction of its own, some 10 to 40 ms here). Users made this
        way have no password: give them ``userAccountControl`` 544 (a normal
        account that needs none) to have them enabled."""
        data = self.workdir / "bulk.json"
        data.write_text(json.dumps([[dn, attrs] for dn, attrs in records]), encoding="utf-8")
        try:
            result = subprocess.run(
                ["/usr/bin/python3", "-c", _BULK_ADD, str(self.smb_conf),
                 f"tdb://{self.workdir / 'private' / 'sam.ldb'}", str(data)],
                check=False, capture_output=True, text=True, env=self._env())
        finally:
            data.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"bulk add into sam.ldb failed:\n{result.stderr[-2000:]}")

    def set_enabled(self, dn: str, enabled: bool) -> None:
        flags = UF_NORMAL_ACCOUNT | (0 if enabled else UF_ACCOUNTDISABLE)
        self.modify(dn, [(ldap.MOD_REPLACE, "userAccountControl", [str(flags).encode()])])

    def grant_get_changes(self, trustee_dn: str) -> None:
        """Give ``trustee_dn`` "Replicating Directory Changes" on the domain root."""
        result = subprocess.run(
            [self.samba_tool, "dsacl", "set", f"--car={GET_CHANGES}", "--action=allow",
             f"--objectdn={self.base_dn}", f"--trusteedn={trustee_dn}",
             "-H", f"tdb://{self.workdir / 'private' / 'sam.ldb'}", "-s", str(self.smb_conf)],
            check=False, capture_output=True, text=True, env=self._env())
        if result.returncode != 0:
            raise RuntimeError(f"samba-tool dsacl set failed:\n{result.stderr[-2000:]}")
