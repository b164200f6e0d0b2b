"""The SMTP front against real clients: acceptance, DSN parameters, hook errors."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest

from dirsync.testing.slapd import SlapdServer

from .helpers import Hub, RelayEnv, Sink, contoso_relay, message


@pytest.fixture
def front(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub) -> RelayEnv:
    contoso_relay(relay_env, sinks)
    relay_env.start()
    return relay_env


@pytest.mark.parametrize("recipient, code, status", [
    ("stranger@elsewhere.com", 550, b"5.7.1"),            # not ours, no route: no open relay
    ("nobody@example.org", 550, b"5.1.1"),                # our domain, not in the hub
    ("IMCEASMTP-victim+40elsewhere+2Ecom@example.org", 550, b"5.7.1"),  # relay via IMCEA
    ("IMCEAX400-c=US+3G@example.org", 553, b"5.1.3"),     # bad encoding
    ("IMCEAX400-nonsense@example.org", 553, b"5.1.3"),    # not an O/R address
    ("IMCEANOTES-x+40y@example.org", 550, b"5.7.1"),      # a type nobody routes
])
def test_no_open_relay(front: RelayEnv, recipient: str, code: int, status: bytes) -> None:
    with front.smtp() as client:
        assert client.mail("ted@example.org")[0] == 250
        reply = client.rcpt(recipient)
    assert reply[0] == code
    assert reply[1].startswith(status)


@pytest.mark.parametrize("recipient", [
    "ted@example.org",                                   # a hub user
    "T.Bremer@Example.ORG",                              # a secondary proxy, any case
    "bob@example.org",                                   # a hub contact
    "someone@partner.example",                           # an SMTP address space
    "IMCEAMS-MICROSOFT_PO2_ZED@example.org",             # a foreign address space
    "IMCEAX400-c=US+3Ba=+20+3Bp=Contoso+3Bo=SiteB+3Bs=Zed+3B@example.org",
    "IMCEAMS-EXCHANGE_HUB_TEDB@example.org",             # a hub user's foreign proxy
])
def test_accepted_recipients(front: RelayEnv, recipient: str) -> None:
    with front.smtp() as client:
        client.mail("someone@partner.example")
        code, text = client.rcpt(recipient)
    assert (code, text[:5]) == (250, b"2.1.5")


def test_ehlo_advertises_dsn_and_no_auth_without_users(front: RelayEnv) -> None:
    with front.smtp() as client:
        assert client.has_extn("dsn")
        assert client.has_extn("8bitmime") and client.has_extn("size")
        assert not client.has_extn("auth")


def test_dsn_parameters_accepted(front: RelayEnv) -> None:
    with front.smtp() as client:
        assert client.mail("ted@example.org", ["RET=HDRS", "ENVID=env+2B42", "SIZE=100",
                                               "BODY=8BITMIME"])[0] == 250
        assert client.rcpt("bob@example.org",
                           ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob+40example.org"])[0] == 250
        assert client.rcpt("carol@example.org", ["NOTIFY=NEVER"])[0] == 250
        assert client.rcpt("ted@example.org", ["notify=delay"])[0] == 250
        code, _ = client.data(message())
    assert code == 250


@pytest.mark.parametrize("command, code", [
    ("MAIL FROM:<ted@example.org> RET=ALL", 501),
    ("MAIL FROM:<ted@example.org> RET", 501),
    ("MAIL FROM:<ted@example.org> ENVID=bad+4", 501),
    ("MAIL FROM:<ted@example.org> ENVID=" + "x" * 101, 501),
    ("MAIL FROM:<ted@example.org> RET=FULL RET=HDRS", 501),
    ("MAIL FROM:<ted@example.org> FROBNICATE=1", 555),
    ("MAIL FROM:<ted@example.org> SIZE=999999999999", 552),
    ("MAIL FROM:<>", 250),
    ("MAIL FROM:<> RET=FULL", 250),
])
def test_mail_parameters(front: RelayEnv, command: str, code: int) -> None:
    with front.smtp() as client:
        assert client.docmd(command)[0] == code


@pytest.mark.parametrize("params, code", [
    ("NOTIFY=NEVER,SUCCESS", 501),
    ("NOTIFY=SOMETIMES", 501),
    ("NOTIFY", 501),
    ("ORCPT=bob@example.org", 501),
    ("ORCPT=rfc822;bad+zz", 501),
    ("XFOO=1", 555),
    ("NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob+40example.org", 250),
])
def test_rcpt_parameters(front: RelayEnv, params: str, code: int) -> None:
    with front.smtp() as client:
        client.mail("ted@example.org")
        assert client.docmd(f"RCPT TO:<bob@example.org> {params}")[0] == code


def test_rcpt_before_mail_and_nested_mail(front: RelayEnv) -> None:
    with front.smtp() as client:
        assert client.docmd("RCPT TO:<bob@example.org>")[0] == 503
        assert client.mail("ted@example.org")[0] == 250
        assert client.mail("ted@example.org")[0] == 503


def test_too_many_recipients(relay_env: RelayEnv, sinks: Callable[..., Sink],
                             contoso: Hub) -> None:
    contoso_relay(relay_env, sinks, max_recipients=2)
    relay_env.start()
    with relay_env.smtp() as client:
        client.mail("ted@example.org")
        assert client.rcpt("bob@example.org")[0] == 250
        assert client.rcpt("carol@example.org")[0] == 250
        assert client.rcpt("ted@example.org")[:2][0] == 452


def test_exception_in_a_hook_is_a_temporary_failure(relay_env: RelayEnv,
                                                    sinks: Callable[..., Sink],
                                                    new_slapd: SlapdServer) -> None:
    # A hub that goes away: the RCPT hook's lookup raises; the client must
    # be told to try again (451 4.3.0), not that the address is bad (500).
    new_slapd.start()
    new_slapd.add_suffix()
    relay_env.slapd, relay_env.base = new_slapd, new_slapd.suffix
    contoso_relay(relay_env, sinks)
    relay_env.start()
    new_slapd.stop()
    with relay_env.smtp() as client:
        client.mail("someone@partner.example")
        code, text = client.rcpt("ted@example.org")
    assert (code, text[:5]) == (451, b"4.3.0")


def test_message_to_refused_recipients_only_is_never_queued(front: RelayEnv) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        front.send("ted@example.org", ["stranger@elsewhere.com"], message())
    assert front.events("received") == []
