"""Relay throughput: N messages from C concurrent SMTP clients through the relay to a sink.

Everything is real and on loopback: a fresh slapd holds the hub (the
recipients are hub users, so every RCPT is a hub lookup), ``dirsync relay
serve`` runs as its own process with the queue fsynced (file and folder)
before every 250, and the next hop is an aiosmtpd sink that fsyncs every
message it accepts before its own 250. The clients are threads using
smtplib, one connection each.

Measured: accepted messages per second (the clients' view) and delivered
messages per second (first MAIL to the last message fsynced by the sink);
checked: every message arrived exactly once, the tracking log has one
``relayed`` event per message, and the queue is empty at the end.

Run: ``benchmarks/relay.sh`` or
``.venv/bin/python benchmarks/relay_bench.py [--messages 1000] [--clients 10] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from dirsync.relay.tracking import read_events  # noqa: E402
from dirsync.testing.slapd import SlapdServer, free_port  # noqa: E402

SUFFIX = "dc=example,dc=org"
USERS = 200
BODY = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n" * 24  # 1.8 KB


class FsyncSink:
    """The next hop: stores each message in its own file, fsynced, before answering 250."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.last = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        await asyncio.get_running_loop().run_in_executor(None, self._store, content)
        return "250 2.0.0 stored"

    def _store(self, content: bytes) -> None:
        msgid = ""
        for line in content.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"message-id:"):
                msgid = line.split(b":", 1)[1].strip().decode()
        with self.lock:
            n = len(self.ids)
            self.ids.append(msgid)
        path = self.folder / f"{n:06d}.eml"
        with open(path, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        with self.lock:
            self.last = time.perf_counter()


def hub_entries(server: SlapdServer) -> None:
    conn = server.connect()
    try:
        conn.add_s(f"ou=People,{SUFFIX}", [("objectClass", [b"organizationalUnit"]),
                                            ("ou", [b"People"])])
        for i in range(USERS):
            mail = f"user{i:03d}@example.org"
            conn.add_s(f"uid=user{i:03d},ou=People,{SUFFIX}", [
                ("objectClass", [b"inetOrgPerson", b"dirsyncObject"]),
                ("uid", [f"user{i:03d}".encode()]), ("cn", [f"User {i}".encode()]),
                ("sn", [b"User"]), ("mail", [mail.encode()]),
                ("proxyAddresses", [f"SMTP:{mail}".encode(),
                                    f"X400:c=US;a= ;p=Contoso;o=Bench;s=User;g=U{i};".encode()]),
            ])
    finally:
        conn.unbind_s()


def write_config(work: Path, server: SlapdServer, relay_port: int, sink_port: int,
                 workers: int) -> Path:
    (work / "hub.pw").write_text(server.root_pw + "\n")
    config = work / "dirsync.toml"
    config.write_text(f"""\
[directories.hub]
kind = "ldap"
url = "{server.url}"
base = "{SUFFIX}"
bind_dn = "{server.root_dn}"
password_file = "hub.pw"

[relay]
hub = "hub"
listen = "127.0.0.1:{relay_port}"
hostname = "relay.example.org"
domains = ["example.org"]
queue = "queue"
tracking_log = "tracking.jsonl"
delivery_workers = {workers}

[relay.hops.sink]
host = "127.0.0.1"
port = {sink_port}
starttls = "off"

[[relay.routes]]
address_space = "SMTP:*@example.org"
hop = "sink"
""")
    return config


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"relay exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"220"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("relay did not start listening")
        time.sleep(0.05)


def client(port: int, first: int, count: int, sent: list[str], errors: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("bench.client")
        for i in range(first, first + count):
            msgid = f"<bench-{i}@bench.client>"
            rcpt = f"user{i % USERS:03d}@example.org"
            data = (f"From: sender@partner.example\r\nTo: {rcpt}\r\nSubject: bench {i}\r\n"
                    f"Message-ID: {msgid}\r\n\r\n{BODY}").encode()
            try:
                refused = smtp.sendmail("sender@partner.example", [rcpt], data)
            except smtplib.SMTPException as exc:
                errors.append(f"{msgid}: {exc}")
                continue
            if refused:
                errors.append(f"{msgid}: refused {refused}")
            else:
                sent.append(msgid)


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True,
                                check=False).stdout.strip(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def run(messages: int, clients: int, workers: int, keep: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="relay-", dir=ROOT / "benchmarks" / "scratch"))
    server = SlapdServer(suffix=SUFFIX).start()
    relay: subprocess.Popen[bytes] | None = None
    controller = None
    try:
        server.add_suffix()
        hub_entries(server)
        sink_dir = work / "sink"
        sink_dir.mkdir()
        sink = FsyncSink(sink_dir)
        sink_port, relay_port = free_port(), free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
        controller.start()
        config = write_config(work, server, relay_port, sink_port, workers)
        relay = subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(config), "relay",
                                  "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(relay_port, relay)

        sent: list[str] = []
        errors: list[str] = []
        per = [messages // clients + (1 if c < messages % clients else 0) for c in range(clients)]
        firsts = [sum(per[:c]) for c in range(clients)]
        threads = [threading.Thread(target=client, args=(relay_port, firsts[c], per[c], sent,
                                                         errors)) for c in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accepted_at = time.perf_counter()
        deadline = time.monotonic() + 300
        while len(sink.ids) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.01)
        delivered_at = sink.last or time.perf_counter()
        # Give a duplicate, if any, the chance to show up before counting.
        time.sleep(1.0)
        while any((work / "queue").glob("*.msg")) and time.monotonic() < deadline:
            time.sleep(0.05)
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=60)
        relay = None

        received = sink.ids
        relayed = [e for e in read_events(work / "tracking.jsonl") if e["event"] == "relayed"]
        lost = sorted(set(sent) - set(received))
        duplicates = len(received) - len(set(received))
        result = {
            "messages": messages, "clients": clients, "delivery_workers": workers,
            "accepted": len(sent), "errors": errors[:5], "error_count": len(errors),
            "delivered": len(set(received)), "lost": len(lost), "duplicates": duplicates,
            "relayed_events": len(relayed),
            "queue_left": len(list((work / "queue").glob("*.msg"))),
            "accept_seconds": round(accepted_at - start, 3),
            "deliver_seconds": round(delivered_at - start, 3),
            "accepted_per_second": round(len(sent) / (accepted_at - start), 1),
            "delivered_per_second": round(len(set(received)) / (delivered_at - start), 1),
            "machine": machine(),
            "work": str(work) if keep else None,
        }
        result["none_lost"] = (result["lost"] == 0 and result["error_count"] == 0
                               and result["delivered"] == messages and duplicates == 0)
        return result
    finally:
        if relay is not None:
            relay.kill()
            relay.wait()
        if controller is not None:
            controller.stop()
        server.destroy()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="relay.delivery_workers")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    (ROOT / "benchmarks" / "scratch").mkdir(parents=True, exist_ok=True)
    result = run(args.messages, args.clients, args.workers, args.keep)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["machine"]
        print(f"{result['messages']} messages, {result['clients']} clients, "
              f"{result['delivery_workers']} delivery workers")
        print(f"accepted:  {result['accepted']} in {result['accept_seconds']} s "
              f"= {result['accepted_per_second']} msg/s")
        print(f"delivered: {result['delivered']} in {result['deliver_seconds']} s "
              f"= {result['delivered_per_second']} msg/s (fsync at relay and sink)")
        print(f"lost: {result['lost']}, duplicates: {result['duplicates']}, "
              f"errors: {result['error_count']}, relayed events: {result['relayed_events']}, "
              f"left in queue: {result['queue_left']}")
        print(f"machine: {m['nproc']} cores, kernel {m['kernel']}, Python {m['python']}, "
              f"{m['date']}")
    return 0 if result["none_lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
