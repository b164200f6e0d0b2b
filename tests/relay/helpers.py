"""Helpers for the relay tests: real aiosmtpd next hops, a hub writer, config files.

Next hops are aiosmtpd Controllers on free loopback ports (aiosmtpd cannot
bind port 0, so a free port is picked first); the client is the standard
library's smtplib.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from dirsync.relay.config import load_relay_config
from dirsync.relay.protocol import DsnSMTP
from dirsync.relay.server import RelayThread
from dirsync.relay.tracking import read_events
from dirsync.testing.slapd import SlapdServer, free_port

WAIT = 15.0  # generous upper bound for anything the tests wait for


# -- TOML ------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def toml_dumps(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for test configs: scalars, lists, tables, arrays of tables."""
    lines = []
    tables = []
    for key, value in data.items():
        if isinstance(value, dict) or isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        else:
            lines.append(f'"{key}" = {_toml_value(value)}')
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f'{prefix}."{key}"' if prefix else f'"{key}"'
        if isinstance(value, dict):
            out += f"\n[{name}]\n" + toml_dumps(value, name)
        else:
            for item in value:
                out += f"\n[[{name}]]\n" + toml_dumps(item, name)
    return out


# -- next hops ---------------------------------------------------------------

@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes
    mail_options: list[str]
    rcpt_options: list[str]

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.content, policy=email.policy.compat32)


@dataclass
class SinkHandler:
    """Takes everything except the addresses it is told to refuse."""

    refuse: set[str] = field(default_factory=set)
    tempfail: set[str] = field(default_factory=set)
    folder: Path | None = None  # write each message here, fsynced
    messages: list[Received] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # MAIL/RCPT arguments as received
    tls_sessions: list[bool] = field(default_factory=list)  # per message: over TLS?
    cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        if address in self.tempfail:
            return "450 4.2.1 mailbox busy, try later"
        if not isinstance(server, DsnSMTP):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Stock aiosmtpd keeps the null reverse-path as "<>", DsnSMTP as "".
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        got = Received(sender, list(envelope.rcpt_tos), envelope.original_content,
                       list(envelope.mail_options), list(envelope.rcpt_options))
        if self.folder is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._store, got.content)
        with self.cond:
            self.tls_sessions.append(session.ssl is not None)
            self.messages.append(got)
            self.cond.notify_all()
        return "250 2.0.0 stored"


    def _store(self, content: bytes) -> None:
        assert self.folder is not None
        path = self.folder / f"{time.time_ns()}-{len(self.messages)}.eml"
        with open(path, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())


class DsnController(Controller):
    def factory(self) -> SMTP:
        return DsnSMTP(self.handler, **self.SMTP_kwargs)


class RecordingSMTP(SMTP):
    """Stock aiosmtpd that also keeps the argument of each MAIL and RCPT as it came."""

    async def smtp_MAIL(self, arg: str) -> None:
        self.event_handler.lines.append(f"MAIL {arg}")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        self.event_handler.lines.append(f"RCPT {arg}")
        await super().smtp_RCPT(arg)


class RecordingController(Controller):
    def factory(self) -> SMTP:
        return RecordingSMTP(self.handler, **self.SMTP_kwargs)


class Sink:
    """A next hop: an aiosmtpd server on a loopback port, started on demand."""

    def __init__(self, *, dsn: bool = False, port: int | None = None,
                 tls_context: ssl.SSLContext | None = None, **handler: Any) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler(**handler)
        self.dsn = dsn
        self.tls_context = tls_context  # offer STARTTLS with it
        self.controller: Controller | None = None

    def start(self) -> Sink:
        cls = DsnController if self.dsn else RecordingController
        extra = {"tls_context": self.tls_context} if self.tls_context else {}
        self.controller = cls(self.handler, hostname="127.0.0.1", port=self.port,
                              server_hostname="sink.test", **extra)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def wait(self, count: int = 1, timeout: float = WAIT) -> list[Received]:
        with self.handler.cond:
            ok = self.handler.cond.wait_for(lambda: len(self.handler.messages) >= count, timeout)
        assert ok, f"expected {count} messages, got {len(self.handler.messages)}"
        return self.handler.messages




# -- clients -------------------------------------------------------------------

class RawClient:
    """An SMTP client on a plain socket: sends exactly the bytes it is given."""

    def __init__(self, port: int, timeout: float = WAIT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.banner = self.reply()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: its code and its last line's text."""
        while True:
            line = self._line()
            if line[3:4] != b"-":
                return int(line[:3]), line[4:].decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes | str) -> tuple[int, str]:
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        self.send(raw + b"\r\n")
        return self.reply()

    def pending(self, wait: float = 0.3) -> bytes:
        """Whatever the server sent unasked (after ``wait`` seconds)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            chunk = b""
        finally:
            self.sock.settimeout(WAIT)
        return self.buf + chunk


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The independent SMTP client swaks against the relay on ``port``."""
    return subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.test",
                           "--timeout", str(int(WAIT)), *args],
                          capture_output=True, text=True, timeout=WAIT * 2, check=False)


# -- ``dirsync relay serve`` as a process -----------------------------------------

class ServeProcess:
    """``python -m dirsync -c CONFIG relay serve`` in the background; stderr to a file."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = config.parent / f"serve-{port}.stderr"

    def start(self) -> ServeProcess:
        self._err = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dirsync", "-c", str(self.config), "relay", "serve"],
            stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + WAIT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited with {self.proc.returncode}: "
                                     f"{self.stderr}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    banner = sock.recv(256)
                    if banner.startswith(b"220"):
                        assert b"dirsync relay" in banner, f"another server on the port: {banner!r}"
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, "relay did not start listening"
            time.sleep(0.05)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        code = self.proc.wait(timeout=WAIT)
        self._err.close()
        self.proc = None
        return code


# -- the hub -------------------------------------------------------------------

class Hub:
    """Adds recipients under the test's own subtree of the session slapd."""

    def __init__(self, slapd: SlapdServer, base: str) -> None:
        self.slapd = slapd
        self.base = base

    def add(self, cn: str, *, mail: str | None = None, proxies: tuple[str, ...] = (),
            target: str | None = None, source: str | None = None) -> str:
        """Add a recipient; ``source`` sets dirsync's ownership marker (an
        entry dirsync imported from that connection)."""
        dn = f"cn={cn},{self.base}"
        attrs: list[tuple[str, list[bytes]]] = [
            ("objectClass", [b"inetOrgPerson", b"dirsyncObject"]),
            ("cn", [cn.encode()]),
            ("sn", [cn.split()[-1].encode()]),
            ("displayName", [cn.encode()]),
        ]
        if mail:
            attrs.append(("mail", [mail.encode()]))
        if proxies:
            attrs.append(("proxyAddresses", [p.encode() for p in proxies]))
        if target:
            attrs.append(("targetAddress", [target.encode()]))
        if source:
            attrs.append(("dirsyncSource", [source.encode()]))
        conn = self.slapd.connect()
        try:
            conn.add_s(dn, attrs)
        finally:
            conn.unbind_s()
        return dn




# -- the relay ---------------------------------------------------------------

TED_X400 = "c=US;a= ;p=Contoso;o=Exchange;s=Bremer;g=Ted;"
CAROL_X400 = "c=US;a= ;p=Contoso;o=SiteB;s=Smith;g=Carol;"




@dataclass
class RelayEnv:
    """A relay config in a temporary folder, and the relay started from it."""

    tmp: Path
    slapd: SlapdServer
    base: str
    relay: dict[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    thread: RelayThread | None = None

    @property
    def config_path(self) -> Path:
        return self.tmp / "dirsync.toml"

    @property
    def tracking(self) -> Path:
        return self.tmp / "var" / "tracking.jsonl"

    @property
    def queue(self) -> Path:
        return self.tmp / "var" / "queue"

    def write(self) -> Path:
        (self.tmp / "hub.pw").write_text(self.slapd.root_pw + "\n")
        relay = {
            "hub": "hub", "listen": f"127.0.0.1:{self.port}", "hostname": "relay.example.org",
            "domains": ["example.org"], "queue": "var/queue", "tracking_log": "var/tracking.jsonl",
            "retry_initial": "0.3s", "retry_max": "1s",
        }
        relay.update(self.relay)
        doc = {
            "directories": {"hub": {"kind": "ldap", "url": self.slapd.url, "base": self.base,
                                    "bind_dn": self.slapd.root_dn, "password_file": "hub.pw"}},
            "relay": relay,
        }
        self.config_path.write_text(toml_dumps(doc))
        return self.config_path

    def start(self) -> RelayThread:
        self.write()
        self.thread = RelayThread(load_relay_config(self.config_path)).start()
        return self.thread

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        found = read_events(self.tracking)
        return [e for e in found if event is None or e["event"] == event]

    def wait_event(self, event: str, count: int = 1, timeout: float = WAIT,
                   **match: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events(event)
                     if all(e.get(k) == v for k, v in match.items())]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {count} {event} {match}; saw "
                                     f"{[(e['event'], e.get('recipient')) for e in self.events()]}")
            time.sleep(0.02)

    def smtp(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT)
        client.ehlo("client.test")
        return client

    def send(self, sender: str, recipients: list[str], content: bytes | str, *,
             mail_options: list[str] | None = None,
             rcpt_options: list[str] | None = None) -> dict[str, tuple[int, bytes]]:
        with self.smtp() as client:
            return client.sendmail(sender, recipients, content, mail_options or [],
                                   rcpt_options or [])




def message(subject: str = "hello", *, sender: str = "ted@example.org",
            to: str = "bob@example.org", extra: str = "", body: str = "Hi there.") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@client.test>\r\n{extra}\r\n{body}\r\n").encode()


def report_fields(received: Received) -> tuple[Message, list[Message]]:
    """The delivery-status part of a DSN: the per-message block and per-recipient blocks."""
    msg = received.message
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list)
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return blocks[0], blocks[1:]


def contoso_relay(env: RelayEnv, sinks: Callable[..., Sink], **extra: Any) -> dict[str, Sink]:
    """The usual relay: an internal server, an MS Mail gateway, the Internet, X.400."""
    hops = {"internal": sinks(), "msgw": sinks(), "internet": sinks()}
    env.relay.update({
        "x400": {"global_domain": "c=US;a= ;p=Contoso", "gateway": "c=US;a= ;p=Contoso;o=Gateway",
                 "mappings": [{"domain": "example.org",
                               "or_address": "c=US;a= ;p=Contoso;o=Exchange"}]},
        "hops": {
            "internal": {"host": "127.0.0.1", "port": hops["internal"].port, "starttls": "off"},
            "msgw": {"host": "127.0.0.1", "port": hops["msgw"].port, "starttls": "off",
                     "domain": "msgw.example.net"},
            "internet": {"host": "127.0.0.1", "port": hops["internet"].port, "starttls": "off"},
            "x400out": {"kind": "x400", "path": "var/x400-out"},
        },
        "routes": [
            {"address_space": "SMTP:*@example.org", "hop": "internal"},
            {"address_space": "MS:MICROSOFT/PO2/*", "hop": "msgw"},
            {"address_space": "X400:c=US;a= ;p=Contoso;o=SiteB;*", "hop": "x400out"},
            {"address_space": "SMTP:partner.example", "hop": "internet"},
        ],
    })
    env.relay.update(extra)
    # free_port() only promises a port free at the moment: the relay's was
    # picked before the hops started listening, and one of them may hold it now.
    while env.port in {sink.port for sink in hops.values()}:
        env.port = free_port()
    return hops
