"""Run the example relay on loopback and send it mail.

Starts a throw-away slapd (port 3389) with three hub recipients, two SMTP
sinks standing for the internal mailbox server (2526) and the MS Mail
gateway (2527), shows ``dirsync relay route`` for a few addresses, then
runs the relay (2525) from ``dirsync.toml`` beside this file, sends one
message from Ted to Bob (MS Mail) and Carol (X.400), and prints where it
went. Needs slapd (Debian: apt-get install slapd). Run from the repository:
``.venv/bin/python examples/relay/demo.py``.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from aiosmtpd.controller import Controller  # noqa: E402

from dirsync.cli.main import main  # noqa: E402
from dirsync.relay.config import load_relay_config  # noqa: E402
from dirsync.relay.server import RelayThread  # noqa: E402
from dirsync.testing.slapd import SlapdServer  # noqa: E402

CONFIG = HERE / "dirsync.toml"
PEOPLE = "ou=People,dc=example,dc=org"
ENTRIES: dict[str, dict[str, str | list[str]]] = {
    "Ted Bremer": {"mail": "ted@example.org", "proxyAddresses": [
        "SMTP:ted@example.org", "X400:c=US;a= ;p=Contoso;o=Exchange;s=Bremer;g=Ted;",
        "MS:EXCHANGE/HUB/TEDB"]},
    "Bob Jones": {"mail": "bob@example.org", "targetAddress": ["MS:MICROSOFT/PO2/BOB"]},
    "Carol Smith": {"mail": "carol@example.org",
                    "targetAddress": ["X400:c=US;a= ;p=Contoso;o=SiteB;s=Smith;g=Carol;"]},
}


class Printer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        print(f"  [{self.name}] MAIL FROM:<{envelope.mail_from}> RCPT TO:{envelope.rcpt_tos}")
        return "250 OK"


def populate(server: SlapdServer) -> None:
    server.add_suffix()
    server.add_ou(PEOPLE)
    conn = server.connect()
    try:
        for cn, attrs in ENTRIES.items():
            values = [("objectClass", [b"inetOrgPerson", b"dirsyncObject"]),
                      ("cn", [cn.encode()]), ("sn", [cn.split()[-1].encode()]),
                      ("displayName", [cn.encode()])]
            for name, value in attrs.items():
                items = [value] if isinstance(value, str) else value
                values.append((name, [v.encode() for v in items]))
            conn.add_s(f"cn={cn},{PEOPLE}", values)
    finally:
        conn.unbind_s()


def demo() -> None:
    shutil.rmtree(HERE / "var", ignore_errors=True)
    server = SlapdServer(port=3389).start()
    os.environ["DIRSYNC_HUB_PASSWORD"] = server.root_pw
    sinks = [Controller(Printer(name), hostname="127.0.0.1", port=port)
             for name, port in (("internal", 2526), ("msgw", 2527))]
    started: list[Controller] = []
    try:
        populate(server)
        for sink in sinks:
            sink.start()
            started.append(sink)
        for address in ("bob@example.org", "carol@example.org",
                        "Zoe[X400:c=US;a= ;p=Contoso;o=SiteB;s=Zed;g=Zoe;]"):
            print(f"$ dirsync relay route '{address}' --sender ted@example.org")
            main(["-c", str(CONFIG), "relay", "route", address, "--sender", "ted@example.org"])
            print()
        with RelayThread(load_relay_config(CONFIG)):
            print("sending one message from ted@example.org to Bob and Carol ...")
            with smtplib.SMTP("127.0.0.1", 2525) as client:
                client.sendmail("ted@example.org", ["bob@example.org", "carol@example.org"],
                                b"From: ted@example.org\r\nSubject: hello\r\n\r\nHi both.\r\n")
            deadline = time.monotonic() + 10
            out = HERE / "var" / "x400-out"
            while time.monotonic() < deadline and not (sinks[1].handler.count
                                                       and list(out.glob("*.eml"))):
                time.sleep(0.05)
        for path in sorted(out.glob("*.eml")):
            print(f"  [x400] {path.name}:")
            for line in path.read_text().splitlines():
                if line.startswith("X400-"):
                    print(f"    {line}")
        print("tracking log:", HERE / "var" / "tracking.jsonl")
    finally:
        for sink in started:
            sink.stop()
        server.destroy()


if __name__ == "__main__":
    demo()
