"""RFC 3461 parameters and RFC 3464 reports: pure, no servers."""

from __future__ import annotations

import email
import email.policy

import pytest

from dirsync.relay.dsn import (
    DsnSyntaxError,
    RecipientDsn,
    mail_options,
    parse_envid,
    parse_notify,
    parse_orcpt,
    parse_ret,
    xtext_decode,
    xtext_encode,
)
from dirsync.relay.reports import RecipientReport, build_report, is_report_content

ORIGINAL = (b"From: ted@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n"
            b"Message-ID: <1@x>\r\n\r\nbody line\r\n")


@pytest.mark.parametrize("plain, xtext", [
    ("bob@example.org", "bob@example.org"),
    ("a+b=c", "a+2Bb+3Dc"),
    ("with space", "with+20space"),
    ("jürgen", "j+C3+BCrgen"),
])
def test_xtext_round_trip(plain: str, xtext: str) -> None:
    assert xtext_encode(plain) == xtext
    assert xtext_decode(xtext) == plain


@pytest.mark.parametrize("bad", ["a+4", "a+GG", "a=b", "a b"])
def test_bad_xtext(bad: str) -> None:
    with pytest.raises(DsnSyntaxError):
        xtext_decode(bad)


@pytest.mark.parametrize("value, words", [
    ("NEVER", frozenset()),
    ("never", frozenset()),
    ("SUCCESS", frozenset({"SUCCESS"})),
    ("failure,delay", frozenset({"FAILURE", "DELAY"})),
])
def test_notify(value: str, words: frozenset[str]) -> None:
    assert parse_notify(value) == words


@pytest.mark.parametrize("value", ["NEVER,SUCCESS", "SOMETIMES", "SUCCESS,SUCCESS", ""])
def test_bad_notify(value: str) -> None:
    with pytest.raises(DsnSyntaxError):
        parse_notify(value)


def test_orcpt_ret_envid() -> None:
    assert parse_orcpt("rfc822;bob+40example.org") == ("rfc822", "bob@example.org")
    assert parse_orcpt("RFC822;a@b") == ("rfc822", "a@b")
    assert parse_ret("hdrs") == "HDRS"
    assert parse_envid("QQ+2B1") == "QQ+1"
    for bad in (lambda: parse_orcpt("a@b"), lambda: parse_ret("ALL"),
                lambda: parse_envid("x" * 101), lambda: parse_orcpt("rf c;x")):
        with pytest.raises(DsnSyntaxError):
            bad()


@pytest.mark.parametrize("notify, success, failure, delay", [
    (None, False, True, True),       # RFC 3461 section 4.1: the default
    (frozenset(), False, False, False),
    (frozenset({"SUCCESS"}), True, False, False),
    (frozenset({"FAILURE", "DELAY"}), False, True, True),
])
def test_what_is_reported(notify: frozenset[str] | None, success: bool, failure: bool,
                          delay: bool) -> None:
    dsn = RecipientDsn(notify)
    assert (dsn.wants("SUCCESS"), dsn.wants("FAILURE"), dsn.wants("DELAY")) \
        == (success, failure, delay)


def test_passing_parameters_on() -> None:
    dsn = RecipientDsn(frozenset({"SUCCESS", "FAILURE"}), ("rfc822", "bob+x@example.org"))
    assert dsn.rcpt_options() == ["NOTIFY=FAILURE,SUCCESS", "ORCPT=rfc822;bob+2Bx@example.org"]
    assert RecipientDsn(frozenset()).rcpt_options() == ["NOTIFY=NEVER"]
    assert mail_options("HDRS", "a b") == ["RET=HDRS", "ENVID=a+20b"]
    assert RecipientDsn.from_json(dsn.to_json()) == dsn


def make_report(**kwargs: object) -> email.message.Message:
    args: dict[str, object] = {
        "reporting_mta": "relay.example.org", "postmaster": "postmaster@example.org",
        "to": "ted@example.org", "original": ORIGINAL, "ret": None, "envid": "env-1",
        "arrival": 0.0,
        "recipients": [RecipientReport("rfc822; dave@example.org", "failed", "5.1.1",
                                       original_recipient="rfc822; dave@example.org",
                                       diagnostic="x-local; no route", text="No route.")]}
    args.update(kwargs)
    data = build_report(**args)  # type: ignore[arg-type]
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF line ends only
    return email.message_from_bytes(data, policy=email.policy.compat32)


def test_report_structure() -> None:
    msg = make_report()
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["To"] == "<ted@example.org>"
    text, status, original = msg.get_payload()
    assert "could not be delivered to dave@example.org" in text.get_payload()
    per_message, per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; relay.example.org"
    assert per_message["Original-Envelope-Id"] == "env-1"
    assert per_message["Arrival-Date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert per_rcpt["Final-Recipient"] == "rfc822; dave@example.org"
    assert per_rcpt["Original-Recipient"] == "rfc822; dave@example.org"
    assert (per_rcpt["Action"], per_rcpt["Status"]) == ("failed", "5.1.1")
    assert per_rcpt["Diagnostic-Code"] == "x-local; no route"
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0]["Subject"] == "hi"
    assert is_report_content(msg.as_bytes())
    assert not is_report_content(ORIGINAL)


@pytest.mark.parametrize("ret, action, returned", [
    ("HDRS", "failed", "text/rfc822-headers"),
    ("FULL", "relayed", "message/rfc822"),
    (None, "relayed", "text/rfc822-headers"),
    (None, "delayed", "text/rfc822-headers"),
])
def test_report_returns_what_ret_asks(ret: str | None, action: str, returned: str) -> None:
    msg = make_report(ret=ret, recipients=[
        RecipientReport("x400; /S=Smith/O=SiteB/PRMD=Contoso/ADMD= /C=US/", action, "2.0.0")])
    part = msg.get_payload()[2]
    assert part.get_content_type() == returned
    if returned == "text/rfc822-headers":
        assert "body line" not in part.get_payload()
    status = msg.get_payload()[1].get_payload()[1]
    assert status["Final-Recipient"].startswith("x400; /S=Smith/")


def test_a_large_original_comes_back_as_headers() -> None:
    big = ORIGINAL + b"x" * (2 << 20) + b"\r\n"
    assert make_report(original=big, ret="FULL").get_payload()[2].get_content_type() \
        == "text/rfc822-headers"
