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
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

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
        cls = DsnController if self.dsn else Controller
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




# -- the hub -------------------------------------------------------------------

class Hub:
    """Adds recipients under the test's own subtree of the session slapd."""

    def __init__(self, slapd: SlapdServer, base: str) -> None:
        self.slapd = slapd
        self.base = base

    def add(self, cn: str, *, mail: str | None = None, proxies: tuple[str, ...] = (),
            target: str | None = None) -> str:
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
    return hops
