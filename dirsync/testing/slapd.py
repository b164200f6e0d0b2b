"""A real OpenLDAP slapd on loopback, for tests, benchmarks and examples.

Each server lives in its own short temporary folder: slapd 2.5 segfaults
when the ldapi socket path is longer than 107 bytes, so the folder sits
directly in the system temp dir. The config is checked with ``slapd -Ttest -u`` (dry run: a fresh mdb has no files yet)
before start, slapd runs in the foreground with ``-d none`` (so fatal errors
still reach its log), readiness is polled, and it is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ldap

from dirsync.bundled import bundled_dir
from dirsync.testing.tlscerts import make_tls_material

SLAPD_CANDIDATES = ("/usr/sbin/slapd", "/usr/local/libexec/slapd", "/usr/libexec/slapd")
MODULE_PATHS = ("/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap")
SYSTEM_SCHEMA_DIR = Path("/etc/ldap/schema")
BUNDLED_SCHEMA = bundled_dir("schemas") / "dirsync.schema"
BASE_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")

# Default mdb map size: the 10 MiB default fills at about 4,600 entries.
DEFAULT_MAXSIZE = 4 << 30


class SlapdMissing(RuntimeError):
    """slapd is not installed on this machine."""


def find_slapd() -> str | None:
    found = shutil.which("slapd")
    if found:
        return found
    for candidate in SLAPD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _module_path() -> str:
    for path in MODULE_PATHS:
        if Path(path, "back_mdb.so").exists() or Path(path, "back_mdb.la").exists():
            return path
    return MODULE_PATHS[0]


@dataclass
class SlapdServer:
    """One slapd process with one mdb database.

    ``overlays`` may name ``syncprov`` (optionally with ``sessionlog``),
    ``accesslog``; ``database_extra`` is appended verbatim to the database
    section (for syncrepl consumers and the like).
    """

    suffix: str = "dc=example,dc=org"
    root_pw: str = "secret"
    syncprov: bool = False
    sessionlog: int | None = None
    accesslog: bool = False
    tls: bool = False
    #: serverID (multi-provider replication needs a distinct one per server).
    server_id: int | None = None
    #: mdb without a disk flush per write: tests do not test slapd's own
    #: durability, and flushes dominate their run time.
    dbnosync: bool = False
    database_extra: str = ""
    maxsize: int = DEFAULT_MAXSIZE
    schemas: tuple[str, ...] = ()
    port: int = 0
    tls_port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ds", dir="/tmp")))
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        found = find_slapd()
        if found is None:
            raise SlapdMissing("slapd not found (Debian: apt-get install slapd ldap-utils)")
        self.slapd: str = found
        if not self.port:
            self.port = free_port()
        if self.tls and not self.tls_port:
            self.tls_port = free_port()

    # -- addresses -------------------------------------------------------
    @property
    def root_dn(self) -> str:
        return f"cn=admin,{self.suffix}"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "ldapi"

    @property
    def ldapi_url(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.socket_path), safe="")

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.workdir / "slapd.log"

    # -- config ----------------------------------------------------------
    def _write_tls_material(self) -> list[str]:
        tls = make_tls_material(self.workdir)
        return [
            f"TLSCACertificateFile {tls.ca_file}",
            f"TLSCertificateFile {tls.cert_file}",
            f"TLSCertificateKeyFile {tls.key_file}",
        ]

    def config_text(self) -> str:
        lines = [f"include {SYSTEM_SCHEMA_DIR / s}.schema" for s in BASE_SCHEMAS]
        lines.append(f"include {BUNDLED_SCHEMA}")
        lines += [f"include {s}" for s in self.schemas]
        if self.server_id is not None:
            lines.append(f"serverID {self.server_id}")
        lines += [
            f"pidfile {self.workdir / 'slapd.pid'}",
            f"modulepath {_module_path()}",
            "moduleload back_mdb",
            "moduleload syncprov",
            "moduleload accesslog",
            "sizelimit unlimited",
            # The local root over ldapi (SASL EXTERNAL) acts as the root DN.
            'authz-regexp "gidNumber=0[+]uidNumber=0,cn=peercred,cn=external,cn=auth" '
            f'"{self.root_dn}"',
            # Let the root DN read everything; anonymous reads are harmless on loopback.
            "access to * by * read",
        ]
        if self.tls:
            lines += self._write_tls_material()
        db = self.workdir / "db"
        db.mkdir(exist_ok=True)
        if self.accesslog:
            logdb = self.workdir / "accesslog"
            logdb.mkdir(exist_ok=True)
            lines += [
                "database mdb",
                "suffix cn=accesslog",
                "rootdn cn=admin,cn=accesslog",
                f"directory {logdb}",
                f"maxsize {self.maxsize}",
                "index reqStart eq",
                "overlay syncprov",
                "syncprov-nopresent TRUE",
                "syncprov-reloadhint TRUE",
            ]
        lines += [
            "database mdb",
            f"suffix {self.suffix}",
            f"rootdn {self.root_dn}",
            f"rootpw {self.root_pw}",
            f"directory {db}",
            f"maxsize {self.maxsize}",
            "index objectClass eq",
            "index entryUUID,entryCSN eq",
            "index dirsyncAnchor,dirsyncSource eq",
            "index proxyAddresses eq",
            "index cn,mail,uid eq",
        ]
        if self.dbnosync:
            lines.append("dbnosync")
        if self.database_extra:
            lines.append(self.database_extra)
        if self.syncprov:
            lines += ["overlay syncprov", "syncprov-checkpoint 100 1"]
            if self.sessionlog:
                lines.append(f"syncprov-sessionlog {self.sessionlog}")
        if self.accesslog:
            lines += [
                "overlay accesslog",
                "logdb cn=accesslog",
                "logops writes",
                "logsuccess TRUE",
            ]
        return "\n".join(lines) + "\n"

    # -- life cycle ------------------------------------------------------
    def start(self, timeout: float = 20.0) -> SlapdServer:
        conf = self.workdir / "slapd.conf"
        if not conf.exists():
            conf.write_text(self.config_text())
        test = subprocess.run([self.slapd, "-Ttest", "-u", "-f", str(conf)], capture_output=True,
                              text=True)
        if test.returncode != 0:
            raise RuntimeError(f"slapd -Ttest rejected the config:\n{test.stderr}")
        urls = [f"ldap://127.0.0.1:{self.port}/", self.ldapi_url + "/"]
        if self.tls:
            urls.append(f"ldaps://127.0.0.1:{self.tls_port}/")
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [self.slapd, "-f", str(conf), "-h", " ".join(urls), "-d", "none"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self._proc.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-4000:])
            try:
                conn = ldap.initialize(self.url)
                conn.simple_bind_s(self.root_dn, self.root_pw)
                conn.unbind_s()
                break
            except ldap.SERVER_DOWN:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("slapd did not become ready in time")
                time.sleep(0.05)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.kill(self._proc.pid, sig)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def replicate_from(self, provider: SlapdServer, rid: int) -> None:
        """Make this server a refreshAndPersist consumer of ``provider``.

        Call before :meth:`start`. With both servers consuming from each
        other (see :func:`replicated_pair`) this is multi-provider
        replication: each accepts writes and passes them to the other.
        """
        self.syncprov = True
        self.database_extra += (
            f"\nsyncrepl rid={rid:03d} provider={provider.url} bindmethod=simple "
            f'binddn="{provider.root_dn}" credentials={provider.root_pw} '
            f'searchbase="{provider.suffix}" type=refreshAndPersist retry="1 +" '
            "timeout=3 network-timeout=3\n")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- helpers for tests -----------------------------------------------
    def connect(self) -> ldap.ldapobject.LDAPObject:
        conn = ldap.initialize(self.url)
        conn.protocol_version = 3
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.simple_bind_s(self.root_dn, self.root_pw)
        return conn

    def add_suffix(self) -> None:
        """Create the suffix entry (a dcObject/organization) if missing."""
        rdn_value = ldap.dn.str2dn(self.suffix)[0][0][1]
        conn = self.connect()
        try:
            conn.add_s(self.suffix, [
                ("objectClass", [b"top", b"dcObject", b"organization"]),
                ("dc", [rdn_value.encode()]),
                ("o", [rdn_value.encode()]),
            ])
        except ldap.ALREADY_EXISTS:
            pass
        finally:
            conn.unbind_s()

    def has_entry(self, dn: str) -> bool:
        conn = self.connect()
        try:
            return bool(conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"]))
        except ldap.NO_SUCH_OBJECT:
            return False
        finally:
            conn.unbind_s()

    def add_ou(self, dn: str) -> None:
        conn = self.connect()
        try:
            name = ldap.dn.str2dn(dn)[0][0][1]
            conn.add_s(dn, [("objectClass", [b"organizationalUnit"]), ("ou", [name.encode()])])
        except ldap.ALREADY_EXISTS:
            pass
        finally:
            conn.unbind_s()


def replicated_pair(suffix: str = "dc=example,dc=org",
                    **options: object) -> tuple[SlapdServer, SlapdServer]:
    """Two servers, A and B, replicating each other (multi-provider).

    B is a syncrepl consumer of A and A of B, so an entry written at either
    site appears at the other, as between two Exchange sites of the seeds.
    Both are started; the suffix entry is created at A and replicates to B.
    """
    site_a = SlapdServer(suffix=suffix, server_id=1, **options)  # type: ignore[arg-type]
    site_b = SlapdServer(suffix=suffix, server_id=2, **options)  # type: ignore[arg-type]
    site_b.replicate_from(site_a, rid=1)
    site_a.replicate_from(site_b, rid=2)
    for site in (site_a, site_b):
        site.database_extra += "\nmultiprovider on\n"
    site_a.start()
    site_b.start()
    site_a.add_suffix()
    if not wait_for(lambda: site_b.has_entry(suffix)):
        raise RuntimeError("the suffix did not replicate from site A to site B")
    return site_a, site_b


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    """Poll until ``predicate()`` is true (replication is asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
