"""End to end through the relay: real aiosmtpd next hops, the real slapd hub.

Translation both ways, X.400 gateway files, routing by cost, non-delivery
and delivery reports, loops, partial refusals, deferral and retry, expiry.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dirsync.addresses.imcea import decode_imcea, encode_imcea
from dirsync.addresses.x400 import parse_or_address
from dirsync.relay.gateway import read_gateway_message

from .helpers import (
    CAROL_X400,
    TED_X400,
    WAIT,
    Hub,
    RelayEnv,
    Sink,
    contoso_relay,
    message,
    report_fields,
)


def gateway_files(folder: Path, count: int = 1, timeout: float = WAIT) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(p for p in folder.glob("*.eml")) if folder.exists() else []
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"expected {count} files in {folder}"
        time.sleep(0.02)


def wait_empty(queue: Path, timeout: float = WAIT) -> None:
    """The queue folder holds no message (reports and all)."""
    deadline = time.monotonic() + timeout
    while list(queue.glob("*.msg")):
        assert time.monotonic() < deadline, "the queue did not empty"
        time.sleep(0.02)


@pytest.fixture
def hops(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub) -> dict[str, Sink]:
    return contoso_relay(relay_env, sinks)


def test_outbound_translation_to_ms_mail_and_x400(relay_env: RelayEnv,
                                                  hops: dict[str, Sink]) -> None:
    relay_env.start()
    relay_env.send("ted@example.org", ["bob@example.org", "carol@example.org"], message())

    # MS Mail through its SMTP gateway: both addresses IMCEA-encapsulated,
    # the recipient at the gateway's domain, Ted at the relay's own domain
    # (his primary MS proxy), so that replies come back through the relay.
    got = hops["msgw"].wait()[0]
    assert got.recipients == ["IMCEAMS-MICROSOFT_PO2_BOB@msgw.example.net"]
    assert decode_imcea(got.sender).address == "EXCHANGE/HUB/TEDB"
    assert got.sender == "IMCEAMS-EXCHANGE_HUB_TEDB@example.org"

    # X.400: a gateway file with the envelope as RFC 2156 headers.
    [path] = gateway_files(relay_env.tmp / "var" / "x400-out")
    gm = read_gateway_message(path)
    assert parse_or_address(gm.recipients[0].value).same_as(parse_or_address(CAROL_X400))
    assert gm.originator is not None
    assert parse_or_address(gm.originator.value).same_as(parse_or_address(TED_X400))
    head = email.message_from_bytes(gm.content, policy=email.policy.compat32)
    queue_id = relay_env.wait_event("delivered")[0]["message_id"]
    assert head["X400-MTS-Identifier"] == f"[/C=US/ADMD= /PRMD=Contoso/;{queue_id}]"
    assert head["X400-Received"].startswith('by mta "relay.example.org" in /C=US/ADMD= '
                                            "/PRMD=Contoso/; Relayed; ")
    assert head["X400-Content-Type"] == "P2-1988 (22)"
    assert head["Subject"] == "hello"

    # Tracking: every step, with the message id and the recipient.
    for event in ("received", "translated", "routed"):
        assert {e["recipient"] for e in relay_env.events(event)} \
            == {"bob@example.org", "carol@example.org"}
    translated = {e["recipient"]: e for e in relay_env.events("translated")}
    assert translated["bob@example.org"]["to"] == "MS:MICROSOFT/PO2/BOB"
    assert translated["carol@example.org"]["entry"].startswith("cn=Carol Smith,")
    assert relay_env.events("relayed")[0]["recipient"] == "bob@example.org"
    assert {e["message_id"] for e in relay_env.events()} == {queue_id}


def test_sender_without_proxy_is_mapped_by_rfc2156(relay_env: RelayEnv,
                                                   hops: dict[str, Sink]) -> None:
    relay_env.start()
    # Not in the hub: the mapping table gives example.org its O/R prefix.
    relay_env.send("Pat.Q.Doe@example.org", ["carol@example.org"], message())
    [path] = gateway_files(relay_env.tmp / "var" / "x400-out")
    originator = read_gateway_message(path).originator
    assert originator is not None
    assert parse_or_address(originator.value).to_std() \
        == "/G=Pat/I=Q/S=Doe/O=Exchange/PRMD=Contoso/ADMD= /C=US/"
    # An Internet sender travels as DDA:RFC-822 at the gateway (RFC 1685 F.3.2.3).
    relay_env.send("fred@partner.example", ["carol@example.org"], message())
    second = [p for p in gateway_files(relay_env.tmp / "var" / "x400-out", 2) if p != path]
    originator = read_gateway_message(second[0]).originator
    assert originator is not None
    assert parse_or_address(originator.value).to_rfc1685() \
        == "DDA:RFC-822=fred(a)partner.example; O=Gateway; P=Contoso; A= ; C=US"


def test_inbound_from_x400_pickup_and_reply(relay_env: RelayEnv, hops: dict[str, Sink]) -> None:
    pickup = relay_env.tmp / "var" / "x400-in"
    relay_env.relay["x400"]["pickup"] = "var/x400-in"
    relay_env.relay["x400"]["pickup_interval"] = "0.05s"
    relay_env.start()
    stranger = "c=US;a= ;p=Contoso;o=SiteB;s=Zed;g=Zoe;"
    # The envelope fields in the three forms a gateway may write.
    for name, originator, recipient in (
            ("1.eml", parse_or_address(CAROL_X400).to_std(), f"Ted[X400:{TED_X400}]"),
            ("2.eml", stranger, parse_or_address(TED_X400).to_rfc1685())):
        (pickup / f".{name}").write_bytes(
            f"X400-Originator: {originator}\r\n"
            f"X400-Recipients: {recipient}\r\n"
            "X400-MTS-Identifier: [/C=US/ADMD= /PRMD=Contoso/;abc]\r\n"
            "X400-Received: by mta gw in /C=US/ADMD= /PRMD=Contoso/; Relayed; "
            "Sat, 21 Nov 2026 14:00:00 GMT\r\n"
            f"Subject: from {name}\r\n\r\nHello Ted.\r\n".encode())
        (pickup / f".{name}").rename(pickup / name)
    got = {m.message["Subject"]: m for m in hops["internal"].wait(2)}
    # Carol is a hub contact (her O/R is its target address): her SMTP address.
    assert got["from 1.eml"].sender == "carol@example.org"
    assert got["from 1.eml"].recipients == ["ted@example.org"]
    # Zoe is in nobody's hub: she travels IMCEA-encapsulated at the relay's domain.
    zoe = got["from 2.eml"].sender
    assert zoe == encode_imcea("X400", stranger, "example.org")
    assert not list(pickup.glob("*.eml"))

    # Ted replies to the encapsulated address: back out to X.400, decoded.
    relay_env.send("ted@example.org", [zoe], message("re: hello"))
    [path] = gateway_files(relay_env.tmp / "var" / "x400-out")
    assert read_gateway_message(path).recipients[0].value == stranger
    received = relay_env.events("received")
    assert {e.get("source") for e in received} == {"x400-pickup", "smtp"}


def test_pickup_recipient_without_smtp_form_gets_a_report(relay_env: RelayEnv,
                                                          hops: dict[str, Sink]) -> None:
    pickup = relay_env.tmp / "var" / "x400-in"
    relay_env.relay["x400"].update(pickup="var/x400-in", pickup_interval="0.05s")
    relay_env.start()
    nobody = "/S=Nobody/O=Elsewhere/PRMD=Other/ADMD= /C=US/"
    # Written under a dot name and renamed, as a gateway must.
    (pickup / ".3.eml").write_bytes(
        f"X400-Originator: {parse_or_address(TED_X400).to_std()}\r\n"
        f"X400-Recipients: {nobody}\r\nSubject: lost\r\n\r\nbody\r\n".encode())
    (pickup / ".3.eml").rename(pickup / "3.eml")
    # The originator is Ted (his X.400 proxy): the report comes to him over SMTP.
    [report] = hops["internal"].wait()
    assert report.sender == ""
    assert report.recipients == ["ted@example.org"]
    _, [rcpt] = report_fields(report)
    assert rcpt["Final-Recipient"] == f"x400; {nobody}"
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", "5.1.1")


def test_bad_pickup_file_is_set_aside(relay_env: RelayEnv, hops: dict[str, Sink]) -> None:
    pickup = relay_env.tmp / "var" / "x400-in"
    relay_env.relay["x400"].update(pickup="var/x400-in", pickup_interval="0.05s")
    relay_env.start()
    (pickup / ".junk.eml").write_bytes(b"Subject: no envelope\r\n\r\nx\r\n")
    (pickup / ".junk.eml").rename(pickup / "junk.eml")
    deadline = time.monotonic() + WAIT
    while not (pickup / "bad" / "junk.eml").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert relay_env.events("received") == []


def test_routing_by_cost(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks)
    cheap = sinks()
    relay_env.relay["hops"]["cheap"] = {"host": "127.0.0.1", "port": cheap.port,
                                        "starttls": "off", "domain": "cheap.example.net"}
    relay_env.relay["routes"] += [
        # Less specific but cheaper than the PO2 route: it wins for PO2 too.
        {"address_space": "MS:MICROSOFT/*", "hop": "cheap", "cost": 1},
    ]
    relay_env.relay["routes"][1]["cost"] = 5  # MS:MICROSOFT/PO2/* -> msgw
    relay_env.start()
    relay_env.send("ted@example.org", ["bob@example.org"], message())
    assert cheap.wait()[0].recipients == ["IMCEAMS-MICROSOFT_PO2_BOB@cheap.example.net"]
    assert hops["msgw"].messages == []
    routed = relay_env.wait_event("routed")[0]
    assert (routed["route"], routed["cost"], routed["hop"]) == ("MS:MICROSOFT/*", 1, "cheap")


def test_equal_cost_goes_to_the_most_specific(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                              contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks)
    relay_env.relay["hops"]["general"] = {"host": "127.0.0.1", "port": sinks().port,
                                          "starttls": "off", "domain": "general.example.net"}
    relay_env.relay["routes"].insert(0, {"address_space": "MS:*", "hop": "general"})
    relay_env.start()
    relay_env.send("ted@example.org", ["bob@example.org"], message())
    assert hops["msgw"].wait()[0].recipients == ["IMCEAMS-MICROSOFT_PO2_BOB@msgw.example.net"]


def test_one_unmappable_recipient_gets_a_report_the_others_go_on(
        relay_env: RelayEnv, hops: dict[str, Sink]) -> None:
    relay_env.start()
    relay_env.send("ted@example.org", ["bob@example.org", "dave@example.org", "erin@example.org"],
                   message("three"))
    assert hops["msgw"].wait()[0].recipients == ["IMCEAMS-MICROSOFT_PO2_BOB@msgw.example.net"]
    [report] = hops["internal"].wait()
    assert report.sender == ""  # the null reverse-path
    assert report.recipients == ["ted@example.org"]
    msg = report.message
    assert msg["Auto-Submitted"] == "auto-replied"
    per_message, per_rcpt = report_fields(report)
    assert per_message["Reporting-MTA"] == "dns; relay.example.org"
    found = {r["Final-Recipient"]: (r["Action"], r["Status"]) for r in per_rcpt}
    assert found == {
        # A contact whose target type has no route: cannot be mapped.
        "rfc822; dave@example.org": ("failed", "5.1.1"),
        # A contact whose X.400 target address is not an O/R address.
        "rfc822; erin@example.org": ("failed", "5.1.3"),
    }
    # RET not given: a failure report returns the whole message.
    returned = msg.get_payload()[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned.get_payload()[0]["Subject"] == "three"
    assert {e["recipient"] for e in relay_env.events("failed")} \
        == {"dave@example.org", "erin@example.org"}
    assert relay_env.wait_event("report_sent", 2)[0]["to"] == "ted@example.org"


def test_unmappable_sender_fails_every_recipient(relay_env: RelayEnv,
                                                 hops: dict[str, Sink]) -> None:
    relay_env.relay["routes"].append({"address_space": "SMTP:*.partner.example",
                                      "hop": "internet"})
    relay_env.start()
    # An Internet sender too long for a domain-defined attribute (128): it
    # has no X.400 form, so nobody on the X.400 side could ever reply.
    sender = "x" * 64 + "@" + "y" * 60 + ".partner.example"
    zed = "IMCEAX400-c=US+3Ba=+20+3Bp=Contoso+3Bo=SiteB+3Bs=Zed+3B@example.org"
    relay_env.send(sender, ["carol@example.org", zed], message(), rcpt_options=["NOTIFY=FAILURE"])
    [report] = hops["internet"].wait()
    assert report.recipients == [sender]
    _, per_rcpt = report_fields(report)
    assert {(r["Final-Recipient"], r["Status"]) for r in per_rcpt} == {
        ("rfc822; carol@example.org", "5.1.7"), (f"rfc822; {zed}", "5.1.7")}
    assert not (relay_env.tmp / "var" / "x400-out").exists() \
        or not list((relay_env.tmp / "var" / "x400-out").glob("*.eml"))


def test_route_that_demands_a_sender_proxy(relay_env: RelayEnv, hops: dict[str, Sink]) -> None:
    relay_env.relay["routes"][1]["require_sender_proxy"] = True  # MS:MICROSOFT/PO2/*
    relay_env.start()
    relay_env.send("someone@partner.example", ["bob@example.org", "ted@example.org"], message())
    # Bob (MS) needs a sender proxy the sender lacks: the sender cannot be
    # mapped, so every recipient the relay handles fails, Ted (SMTP) too.
    [report] = hops["internet"].wait()
    _, per_rcpt = report_fields(report)
    assert sorted((r["Final-Recipient"], r["Status"]) for r in per_rcpt) \
        == [("rfc822; bob@example.org", "5.1.7"), ("rfc822; ted@example.org", "5.1.7")]
    assert hops["internal"].messages == [] and hops["msgw"].messages == []


def test_delivery_reports_on_notify_success(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                            contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks)
    hops["msgw"].stop()
    dsn_hop = sinks(dsn=True)
    relay_env.relay["hops"]["msgw"]["port"] = dsn_hop.port
    relay_env.start()
    relay_env.send("ted@example.org", ["carol@example.org", "bob@example.org",
                                       "someone@partner.example"],
                   message("notify"), mail_options=["RET=HDRS", "ENVID=track+2B1"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    # The DSN-capable hop takes the request over: NOTIFY, ORCPT, RET, ENVID passed on.
    got = dsn_hop.wait()[0]
    assert "RET=HDRS" in got.mail_options and "ENVID=track+2B1" in got.mail_options
    assert "NOTIFY=FAILURE,SUCCESS" in got.rcpt_options
    # No ORCPT was given: the relay passes the address it received (xtext).
    assert "ORCPT=rfc822;bob@example.org" in got.rcpt_options
    # The X.400 queue and the hop without DSN: the relay reports "relayed" itself.
    [report] = hops["internal"].wait()
    per_message, per_rcpt = report_fields(report)
    assert per_message["Original-Envelope-Id"] == "track+1"
    assert {(r["Final-Recipient"], r["Action"], r["Status"]) for r in per_rcpt} == {
        (f"x400; {parse_or_address(CAROL_X400).to_std()}", "relayed", "2.0.0"),
        ("rfc822; someone@partner.example", "relayed", "2.0.0"),
    }
    assert report.message.get_payload()[2].get_content_type() == "text/rfc822-headers"
    time.sleep(0.3)
    assert len(hops["internal"].messages) == 1  # one report, nothing about Bob


def test_no_report_without_a_sender_to_send_it_to(relay_env: RelayEnv,
                                                  hops: dict[str, Sink]) -> None:
    relay_env.start()
    relay_env.send("", ["dave@example.org"], message())
    relay_env.wait_event("failed", recipient="dave@example.org")
    relay_env.send("ted@example.org", ["dave@example.org"], message(), rcpt_options=["NOTIFY=NEVER"])
    relay_env.wait_event("failed", 2)
    time.sleep(0.3)
    assert relay_env.events("report_sent") == []
    assert hops["internal"].messages == []


@pytest.mark.parametrize("received, x400_received, reported", [(25, 25, False), (26, 25, True)])
def test_loop_detection(relay_env: RelayEnv, hops: dict[str, Sink], received: int,
                        x400_received: int, reported: bool) -> None:
    relay_env.start()
    trace = "".join(f"Received: from hop{i} by hop{i + 1}; Sat, 21 Nov 2026 14:00:00 GMT\r\n"
                    for i in range(received))
    trace += "".join(f"X400-Received: by mta m{i} in /C=US/ADMD= /; Relayed; "
                     "Sat, 21 Nov 2026 14:00:00 GMT\r\n" for i in range(x400_received))
    relay_env.send("ted@example.org", ["bob@example.org"], trace.encode() + message())
    if not reported:
        hops["msgw"].wait()
        return
    [report] = hops["internal"].wait()
    _, [rcpt] = report_fields(report)
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", "5.4.6")
    assert hops["msgw"].messages == []
    assert "51 MTAs" in relay_env.events("failed")[0]["reason"]


def test_partial_refusal_and_per_recipient_retry(relay_env: RelayEnv,
                                                 sinks: Callable[..., Sink],
                                                 contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks)
    hops["internet"].handler.refuse.add("gone@partner.example")
    hops["internet"].handler.tempfail.add("busy@partner.example")
    relay_env.start()
    relay_env.send("ted@example.org", ["ok@partner.example", "gone@partner.example",
                                       "busy@partner.example"], message())
    first = hops["internet"].wait()[0]
    assert first.recipients == ["ok@partner.example"]
    [report] = hops["internal"].wait()
    _, [rcpt] = report_fields(report)
    assert rcpt["Final-Recipient"] == "rfc822; gone@partner.example"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert rcpt["Remote-MTA"] == "dns; 127.0.0.1"
    relay_env.wait_event("deferred", recipient="busy@partner.example")
    hops["internet"].handler.tempfail.clear()
    second = hops["internet"].wait(2)[1]
    # The retry carries only the recipient still pending.
    assert second.recipients == ["busy@partner.example"]
    time.sleep(0.5)
    assert len(hops["internet"].messages) == 2


def test_next_hop_down_then_back(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                 contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks)
    hops["internet"].stop()
    relay_env.start()
    relay_env.send("ted@example.org", ["someone@partner.example"], message("patience"))
    deferred = relay_env.wait_event("deferred")[0]
    assert deferred["status"] == "4.4.1"
    hops["internet"].start()
    assert hops["internet"].wait()[0].message["Subject"] == "patience"
    assert relay_env.wait_event("relayed")[0]["recipient"] == "someone@partner.example"
    wait_empty(relay_env.queue)


def test_delay_report_and_expiry(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                 contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks, max_queue_lifetime="1s")
    hops["internet"].stop()
    relay_env.start()
    relay_env.send("ted@example.org", ["someone@partner.example"], message(),
                   rcpt_options=["NOTIFY=DELAY,FAILURE"])
    delayed, expired = hops["internal"].wait(2)
    _, [first] = report_fields(delayed)
    assert (first["Action"], first["Status"]) == ("delayed", "4.4.1")
    assert first["Will-Retry-Until"]
    _, [last] = report_fields(expired)
    assert (last["Action"], last["Status"]) == ("failed", "4.4.7")
    wait_empty(relay_env.queue)


def test_restart_resumes_the_queue(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                   contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks, retry_initial="1s", retry_max="1s")
    hops["internet"].stop()
    relay_env.start()
    relay_env.send("ted@example.org", ["someone@partner.example", "bob@example.org"],
                   message("later"))
    relay_env.wait_event("deferred")
    hops["msgw"].wait()  # Bob is done before the restart ...
    relay_env.stop()
    assert len(list(relay_env.queue.glob("*.msg"))) == 1
    hops["internet"].start()
    relay_env.start()
    # ... and the restarted relay sends only what is still pending.
    assert hops["internet"].wait()[0].recipients == ["someone@partner.example"]
    wait_empty(relay_env.queue)
    assert len(hops["msgw"].messages) == 1
