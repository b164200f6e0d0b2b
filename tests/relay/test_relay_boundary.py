"""The relay's trust boundary, tried from outside: a running ``dirsync relay serve``,
real aiosmtpd next hops, and two independent clients (a raw socket and swaks).

Each test is one finding of the relay's boundary review: control characters
in paths, spoofed senders, malformed paths, the pickup and the SMTP front
disagreeing, an address claimed by several hub entries, and SMTP smuggling.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dirsync.addresses.x400 import parse_or_address

from .helpers import (
    TED_X400,
    WAIT,
    Hub,
    RawClient,
    RelayEnv,
    ServeProcess,
    Sink,
    contoso_relay,
    report_fields,
    swaks,
)


@dataclass
class Front:
    env: RelayEnv
    hops: dict[str, Sink]
    proc: ServeProcess

    @property
    def port(self) -> int:
        return self.env.port

    def client(self, sender: str | None = "ted@example.org") -> RawClient:
        client = RawClient(self.port)
        assert client.cmd("EHLO client.test")[0] == 250
        if sender is not None:
            assert client.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        return client

    def nothing_sent(self, settle: float = 1.0) -> None:
        """No hop got a message and the relay queued nothing."""
        time.sleep(settle)
        assert all(not sink.messages for sink in self.hops.values())
        assert self.env.events("received") == []


@pytest.fixture
def start_front(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
                serve: Callable[[], ServeProcess]) -> Callable[..., Front]:
    def start(**extra: object) -> Front:
        hops = contoso_relay(relay_env, sinks, **extra)
        return Front(relay_env, hops, serve())
    return start


@pytest.fixture
def front(start_front: Callable[..., Front]) -> Front:
    return start_front()


def data(client: RawClient, body: bytes) -> tuple[int, str]:
    assert client.cmd("DATA")[0] == 354
    client.send(body)
    return client.reply()


MESSAGE = b"From: ted@example.org\r\nSubject: boundary\r\n\r\nHello.\r\n.\r\n"


# -- finding 1: a control character in a quoted local part ----------------------

@pytest.mark.parametrize("control", ["\r", "\x00", "\t", "\x1b", "\x7f", "\x0b"])
def test_control_character_in_a_quoted_recipient_is_refused(front: Front, control: str) -> None:
    with front.client() as client:
        code, text = client.cmd(
            f'RCPT TO:<"x{control}Bcc: someone@elsewhere.example"@partner.example>')
        assert (code, text[:5]) == (501, "5.1.3")
        assert client.cmd("DATA")[0] == 503  # no recipient was taken
        assert client.cmd("QUIT")[0] == 221
    front.nothing_sent()


def test_bare_lf_in_a_recipient_path_is_refused(front: Front) -> None:
    # aiosmtpd reads a command up to LF: the path is cut there and is refused
    # for its missing '>'; the rest is an unknown command. Nothing is taken.
    with front.client() as client:
        client.send(b'RCPT TO:<"x\nBcc: someone@elsewhere.example"@partner.example>\r\n')
        code, text = client.reply()
        assert (code, text[:5]) == (501, "5.1.3")
        assert client.reply()[0] == 500
        assert client.cmd("DATA")[0] == 503
    front.nothing_sent()


def test_swaks_cr_in_a_quoted_recipient(front: Front) -> None:
    done = swaks(front.port, "--from", "ted@example.org",
                 "--to", '"x\rBcc: someone@elsewhere.example"@partner.example')
    assert done.returncode == 24, done.stdout  # swaks: every recipient refused
    assert "<** 501 5.1.3" in done.stdout
    front.nothing_sent()


# -- finding 2: the sender, the trace field and the report -----------------------

@pytest.mark.parametrize("control", ["\r", "\x00", "\x1f"])
def test_control_character_in_the_sender_is_refused(front: Front, control: str) -> None:
    with front.client(sender=None) as client:
        code, text = client.cmd(f'MAIL FROM:<"ceo{control}Bcc: x@y.example"@partner.example>')
        assert (code, text[:5]) == (501, "5.1.7")
        assert client.cmd("RCPT TO:<someone@partner.example>")[0] == 503  # no MAIL taken
    front.nothing_sent()


def test_helo_with_a_control_character_is_refused(front: Front) -> None:
    with RawClient(front.port) as client:
        code, _ = client.cmd("EHLO client\rX-Injected: yes")
        assert code == 501
        assert client.cmd("MAIL FROM:<ted@example.org>")[0] == 503  # still no EHLO


def test_received_field_and_report_from_checked_values(start_front: Callable[..., Front],
                                                       sinks: Callable[..., Sink]) -> None:
    front = start_front()
    front.hops["internet"].handler.refuse.add("gone@partner.example")
    sender = '"odd sender"@partner.example'
    with front.client(sender=sender) as client:
        assert client.cmd("RCPT TO:<gone@partner.example>")[0] == 250
        assert client.cmd("RCPT TO:<bob@example.org>")[0] == 250
        assert data(client, MESSAGE)[0] == 250
    # The delivered copy: one Received: field of the relay's, then the header as sent.
    [copy] = front.hops["msgw"].wait()
    head = copy.content.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in " \t"]
    assert names == ["Received", "From", "Subject"]
    assert "from client.test (127.0.0.1)" in head
    # The report about the refused recipient goes to the sender exactly as accepted.
    reports = [m for m in front.hops["internet"].wait() if m.sender == ""]
    [report] = reports
    assert report.recipients == [sender]
    assert f"RCPT TO:<{sender}>" in front.hops["internet"].handler.lines
    assert report.message["To"] == f"<{sender}>"
    _, [rcpt] = report_fields(report)
    assert rcpt["Final-Recipient"] == "rfc822; gone@partner.example"


# -- what goes out is what was checked ---------------------------------------------

@pytest.mark.parametrize("recipient", [
    '"x y"@partner.example',
    '"a\\"b"@partner.example',
    '"@"@partner.example',
    "first.last+tag@partner.example",
    "o'brien@partner.example",
    "Mixed.Case@partner.example",
])
def test_the_hop_gets_the_accepted_path_byte_for_byte(front: Front, recipient: str) -> None:
    sender = '"a sender"@partner.example'
    with front.client(sender=sender) as client:
        code, text = client.cmd(f"RCPT TO:<{recipient}>")
        assert code == 250, text
        assert data(client, MESSAGE)[0] == 250
    hop = front.hops["internet"]
    hop.wait()
    mail, rcpt = hop.handler.lines
    assert re.fullmatch(re.escape(f"FROM:<{sender}>") + r"( SIZE=\d+)?", mail[len("MAIL "):])
    assert rcpt == f"RCPT TO:<{recipient}>"
    [relayed] = front.env.wait_event("relayed")
    assert relayed["hop_address"] == recipient
    assert relayed["recipient"] == recipient


# -- finding 3: malformed paths --------------------------------------------------

@pytest.mark.parametrize("path", [
    "<dave@example.org", "<dave example.org>", "<dave>", "dave@example.org",
    "<dave@example.org>>", "<<dave@example.org>", "<dave@example.org>SIZE=10",
    "<dave@@example.org>", "<dave.@example.org>", "<dave@example..org>",
])
def test_malformed_sender_paths_are_refused(front: Front, path: str) -> None:
    with front.client(sender=None) as client:
        code, text = client.cmd(f"MAIL FROM:{path}")
        assert (code, text[:5]) == (501, "5.1.7"), path
        assert client.cmd("MAIL FROM:<>")[0] == 250  # the null reverse-path is fine
    front.nothing_sent(settle=0)


@pytest.mark.parametrize("path", ["<bob@example.org", "<bob example.org>", "<bob>",
                                  "bob@example.org", "<>"])
def test_malformed_recipient_paths_are_refused(front: Front, path: str) -> None:
    with front.client() as client:
        code, text = client.cmd(f"RCPT TO:{path}")
        assert (code, text[:5]) == (501, "5.1.3"), path


@pytest.mark.parametrize("sender", ["dave", "dave example.org"])
def test_swaks_malformed_sender(front: Front, sender: str) -> None:
    done = swaks(front.port, "--from", sender, "--to", "bob@example.org")
    assert done.returncode == 23, done.stdout  # swaks: MAIL FROM refused
    assert "<** 501 5.1.7" in done.stdout
    front.nothing_sent(settle=0.5)


def test_postmaster_without_a_domain(hub: Hub, start_front: Callable[..., Front]) -> None:
    hub.add("Relay Postmaster", mail="postmaster@example.org")
    front = start_front()
    with front.client() as client:
        assert client.cmd("RCPT TO:<Postmaster>")[0] == 250
        assert data(client, MESSAGE)[0] == 250
    assert front.hops["internal"].wait()[0].recipients == ["postmaster@example.org"]


# -- finding 4: the pickup and the SMTP front decide alike ----------------------------

def test_pickup_and_front_refuse_the_same_unknown_local_address(
        relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
        serve: Callable[[], ServeProcess]) -> None:
    nobody = "/G=No/S=Body/O=Exchange/PRMD=Contoso/ADMD= /C=US/"  # maps to No.Body@example.org
    hops = contoso_relay(relay_env, sinks)
    relay_env.relay["x400"].update(pickup="var/x400-in", pickup_interval="0.05s")
    front = Front(relay_env, hops, serve())
    with front.client() as client:
        code, text = client.cmd("RCPT TO:<No.Body@example.org>")
        assert (code, text[:5]) == (550, "5.1.1")
    pickup = relay_env.tmp / "var" / "x400-in"
    pickup.mkdir(parents=True, exist_ok=True)
    (pickup / ".1.eml").write_bytes(
        f"X400-Originator: {parse_or_address(TED_X400).to_std()}\r\n"
        f"X400-Recipients: {nobody}\r\nSubject: inward\r\n\r\nbody\r\n".encode())
    (pickup / ".1.eml").rename(pickup / "1.eml")
    # Refused there too: Ted gets a report, the internal server nothing else.
    [report] = front.hops["internal"].wait()
    assert (report.sender, report.recipients) == ("", ["ted@example.org"])
    _, [rcpt] = report_fields(report)
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", "5.1.1")
    time.sleep(1.0)
    assert len(front.hops["internal"].messages) == 1
    assert [e["recipient"] for e in relay_env.events("relayed")] == ["ted@example.org"]


# -- finding 5: an address several hub entries claim -------------------------------

def test_a_claimed_address_goes_to_the_entry_the_hub_owns(
        hub: Hub, start_front: Callable[..., Front], relay_env: RelayEnv) -> None:
    hub.add("Lee Imported", proxies=("SMTP:lee@example.org", "MS:MICROSOFT/PO2/LEE"),
            target="MS:MICROSOFT/PO2/LEE", source="mspo2")
    owner = hub.add("Lee Owner", mail="lee@example.org")
    front = start_front()
    done = swaks(front.port, "--from", "ted@example.org", "--to", "lee@example.org")
    assert done.returncode == 0, done.stdout
    [got] = front.hops["internal"].wait()
    assert got.recipients == ["lee@example.org"]
    [translated] = relay_env.wait_event("translated")
    assert translated["entry"] == owner
    time.sleep(1.0)
    assert front.hops["msgw"].messages == []
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(front.env.config_path),
                           "relay", "route", "lee@example.org", "--json"],
                          capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert (result["hub_entry"], result["hop"]) == (owner, "internal")
    assert "the only one dirsync did not import" in done.stderr


def test_an_address_only_imported_entries_claim_waits(
        hub: Hub, start_front: Callable[..., Front]) -> None:
    hub.add("Sam One", proxies=("SMTP:sam@example.org",), target="MS:MICROSOFT/PO2/SAM1",
            source="mspo2")
    hub.add("Sam Two", proxies=("SMTP:sam@example.org",), target="MS:MICROSOFT/PO2/SAM2",
            source="mspo2")
    front = start_front()
    with front.client() as client:
        code, text = client.cmd("RCPT TO:<sam@example.org>")
    assert (code, text[:5]) == (451, "4.3.0")
    assert "sam@example.org is claimed by 2 hub entries" in front.proc.stderr
    front.nothing_sent(settle=0.5)
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(front.env.config_path),
                           "relay", "route", "sam@example.org"],
                          capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 1
    assert "result:      deferred 4.3.0: sam@example.org is claimed by 2 hub entries" \
        in done.stdout


# -- SMTP smuggling ------------------------------------------------------------------

SMUGGLED = (b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<someone@partner.example>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")


@pytest.mark.parametrize("end", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n",
                                 b"\r\n.\r", b"\n.\r", b"\r.\n"])
def test_smuggled_end_of_data_neither_ends_nor_starts_a_message(front: Front,
                                                                end: bytes) -> None:
    with front.client() as client:
        assert client.cmd("RCPT TO:<someone@partner.example>")[0] == 250
        code, text = data(client, b"Subject: first\r\n\r\nfirst" + end + SMUGGLED + b".\r\n")
        # One reply for the whole data, and it refuses it.
        assert (code, text[:5]) == (550, "5.6.0")
        assert client.pending() == b""  # no second reply: no second transaction
        assert client.cmd("NOOP")[0] == 250
        assert client.cmd("RCPT TO:<someone@partner.example>")[0] == 503  # envelope reset
    front.nothing_sent()


def test_a_dot_stuffed_line_travels_intact(front: Front) -> None:
    with front.client() as client:
        assert client.cmd("RCPT TO:<someone@partner.example>")[0] == 250
        body = b"Subject: dots\r\n\r\nbefore\r\n..\r\n...\r\nafter\r\n.\r\n"
        assert data(client, body)[0] == 250
    [got] = front.hops["internet"].wait()
    assert got.content.endswith(b"before\r\n.\r\n..\r\nafter\r\n")


def test_swaks_smuggling(front: Front, tmp_path: Path) -> None:
    body = tmp_path / "body.eml"
    # Sent as is (swaks would otherwise make every line end CRLF); swaks adds
    # the CRLF after the last line, so the file ends in the final dot.
    body.write_bytes(b"Subject: first\r\n\r\nfirst\n.\n" + SMUGGLED + b".")
    done = swaks(front.port, "--from", "ted@example.org", "--to", "someone@partner.example",
                 "--data", f"@{body}", "--no-data-fixup")
    assert done.returncode == 26, done.stdout  # swaks: the message was refused
    assert "<** 550 5.6.0" in done.stdout
    front.nothing_sent()


def test_a_pickup_recipient_only_imported_entries_claim_waits(
        relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
        serve: Callable[[], ServeProcess]) -> None:
    claimed = "c=US;a= ;p=Contoso;o=SiteB;s=Twin;g=Tom;"
    for cn in ("Tom Twin One", "Tom Twin Two"):
        contoso.add(cn, proxies=(f"X400:{claimed}",), target=f"X400:{claimed}",
                    source="x400-siteb")
    hops = contoso_relay(relay_env, sinks)
    relay_env.relay["x400"].update(pickup="var/x400-in", pickup_interval="0.05s")
    front = Front(relay_env, hops, serve())
    pickup = relay_env.tmp / "var" / "x400-in"
    pickup.mkdir(parents=True, exist_ok=True)
    (pickup / ".1.eml").write_bytes(
        f"X400-Originator: {parse_or_address(TED_X400).to_std()}\r\n"
        f"X400-Recipients: {parse_or_address(claimed).to_std()}\r\n"
        "Subject: to a twin\r\n\r\nbody\r\n".encode())
    (pickup / ".1.eml").rename(pickup / "1.eml")
    [deferred] = relay_env.wait_event("deferred")
    assert deferred["status"] == "4.3.0"
    assert "claimed by 2 hub entries" in deferred["reason"]
    assert relay_env.events("failed") == [] and relay_env.events("delivered") == []
    assert all(not sink.messages for sink in front.hops.values())
    assert not list((relay_env.tmp / "var" / "x400-out").glob("*"))
