"""The relay's boundary helpers as pure functions: hub claims, line ends, trace and report fields."""

from __future__ import annotations

import email
import email.policy
import logging
from email.message import Message

import pytest

from dirsync.relay.errors import AmbiguousAddress
from dirsync.relay.hub import HubEntry, choose_entry, entry_from_ldap
from dirsync.relay.message import received_header
from dirsync.relay.paths import PathSyntaxError
from dirsync.relay.reports import RecipientReport, build_report
from dirsync.relay.smtp_hop import crlf_lines


def entry(dn: str, *, imported: bool) -> HubEntry:
    return HubEntry(dn=dn, mail="lee@example.org", display=dn, imported=imported)


def test_entry_from_ldap_reads_the_ownership_marker() -> None:
    assert entry_from_ldap("cn=a", {"dirsyncSource": [b"msmail-po1"]}).imported
    assert not entry_from_ldap("cn=b", {"mail": [b"b@example.org"]}).imported


def test_one_claimant_is_taken_even_if_imported() -> None:
    only = entry("cn=Li Chen", imported=True)
    assert choose_entry("x", [only]) is only
    assert choose_entry("x", []) is None


@pytest.mark.parametrize("order", [0, 1])
def test_the_hubs_own_entry_wins_over_an_imported_one(order: int,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    own, imported = entry("cn=Z Owner", imported=False), entry("cn=A Imported", imported=True)
    claimants = [own, imported] if order else [imported, own]
    with caplog.at_level(logging.WARNING, "dirsync.relay.hub"):
        assert choose_entry("lee@example.org", claimants) is own
    assert "using cn=Z Owner, the only one dirsync did not import" in caplog.text


@pytest.mark.parametrize("imported", [(True, True), (False, False)])
def test_no_single_own_entry_is_a_temporary_failure(imported: tuple[bool, bool]) -> None:
    claimants = [entry("cn=A", imported=imported[0]), entry("cn=B", imported=imported[1])]
    with pytest.raises(AmbiguousAddress) as info:
        choose_entry("sam@example.org", claimants)
    assert info.value.status == "4.3.0"
    assert info.value.dns == ["cn=A", "cn=B"]


@pytest.mark.parametrize("raw, fixed", [
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\nb\n", b"a\r\nb\r\n"),
    (b"a\rb\r", b"a\r\nb\r\n"),
    (b"x\n.\nMAIL FROM:<e@v>\r\n", b"x\r\n.\r\nMAIL FROM:<e@v>\r\n"),
    (b"x\r\r\n", b"x\r\n\r\n"),
])
def test_every_line_end_goes_out_as_crlf(raw: bytes, fixed: bytes) -> None:
    # With CRLF everywhere, smtplib's dot-stuffing sees every line: the "."
    # line above goes out as "..", not as an end of data.
    assert crlf_lines(raw) == fixed


@pytest.mark.parametrize("field", ["helo", "recipient", "peer"])
def test_received_header_refuses_control_characters(field: str) -> None:
    values: dict[str, str | None] = {"helo": None, "recipient": None, "peer": None}
    values[field] = "x\r\nBcc: y@z"
    with pytest.raises(ValueError, match="control character"):
        received_header(by="relay.example.org", queue_id="1", helo=values["helo"],
                        recipient=values["recipient"], peer=values["peer"])


def _report(**kwargs: object) -> bytes:
    args: dict[str, object] = {
        "reporting_mta": "relay.example.org", "postmaster": "postmaster@example.org",
        "to": "ted@example.org", "original": b"Subject: hi\r\n\r\nbody\r\n", "ret": None,
        "envid": None, "arrival": 0.0,
        "recipients": [RecipientReport("rfc822; dave@example.org", "failed", "5.1.1",
                                       diagnostic="smtp; 550 no\r\nBcc: victim@elsewhere.example",
                                       remote_mta="dns; hop\rX-Evil: 1",
                                       text="line\nX-Evil: 2")]}
    args.update(kwargs)
    return build_report(**args)  # type: ignore[arg-type]


def test_report_fields_escape_control_characters() -> None:
    data = _report()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = msg.get_payload()
    assert isinstance(parts, list) and isinstance(parts[1], Message)
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and isinstance(blocks[1], Message)
    status = blocks[1]
    assert status["Diagnostic-Code"] == "smtp; 550 no\\x0d\\x0aBcc: victim@elsewhere.example"
    assert status["Remote-MTA"] == "dns; hop\\x0dX-Evil: 1"
    assert status.get("Bcc") is None and status.get("X-Evil") is None
    assert b"\r\nX-Evil" not in data and b"\r\nBcc" not in data


@pytest.mark.parametrize("to", ["dave", "<ted@example.org>", '"x\rBcc: a@b"@example.org'])
def test_report_to_must_be_a_mailbox(to: str) -> None:
    with pytest.raises(PathSyntaxError):
        _report(to=to)
