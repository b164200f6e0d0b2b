"""STARTTLS and AUTH on the SMTP front: AUTH only over TLS, routes for authenticated clients."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dirsync.relay.auth import hash_password

from .helpers import Hub, RelayEnv, Sink, contoso_relay, message

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")


def make_cert(folder: Path, name: str = "relay") -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}.example.org", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_env(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub) -> RelayEnv:
    make_cert(relay_env.tmp)
    (relay_env.tmp / "users").write_text(
        "# relay users\n" f"alice:{hash_password('wonderland', iterations=1000)}\n")
    contoso_relay(relay_env, sinks)
    relay_env.relay.update(tls={"cert": "relay.pem", "key": "relay.key"},
                           auth={"users_file": "users"})
    # Anyone may reach partner.example; only authenticated clients the world.
    relay_env.relay["routes"].append({"address_space": "SMTP:*", "hop": "internet", "cost": 10,
                                      "authenticated_only": True})
    return relay_env


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a throw-away certificate
    return ctx


def test_auth_only_after_starttls(tls_env: RelayEnv) -> None:
    tls_env.start()
    with tls_env.smtp() as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=")
        assert (code, text[:6]) == (538, b"5.7.11")
        client.starttls(context=client_context())
        client.ehlo("client.test")
        assert client.has_extn("auth")
        assert "PLAIN" in client.esmtp_features["auth"].split()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", "wrong")
        assert client.login("alice", "wonderland")[0] == 235


def test_authenticated_only_route(tls_env: RelayEnv) -> None:
    tls_env.start()
    with tls_env.smtp() as client:
        client.starttls(context=client_context())
        client.ehlo("client.test")
        client.mail("ted@example.org")
        assert client.rcpt("anyone@elsewhere.com")[0] == 550  # not for strangers
    with tls_env.smtp() as client:
        client.starttls(context=client_context())
        client.ehlo("client.test")
        client.login("alice", "wonderland")
        assert client.sendmail("ted@example.org", ["anyone@elsewhere.com"], message()) == {}
    received = tls_env.wait_event("received")[0]
    assert received["recipient"] == "anyone@elsewhere.com"


def test_required_auth_and_starttls(tls_env: RelayEnv) -> None:
    tls_env.relay["tls"]["require_starttls"] = True
    tls_env.relay["auth"]["required"] = True
    tls_env.start()
    with tls_env.smtp() as client:
        assert client.mail("ted@example.org")[0] == 530  # STARTTLS first
        client.starttls(context=client_context())
        client.ehlo("client.test")
        code, text = client.mail("ted@example.org")
        assert (code, text[:5]) == (530, b"5.7.0")  # AUTH first
        client.login("alice", "wonderland")
        assert client.mail("ted@example.org")[0] == 250


@pytest.mark.parametrize("mode", ["required", "opportunistic"])
def test_starttls_to_the_next_hop(relay_env: RelayEnv, sinks: Callable[..., Sink],
                                  contoso: Hub, mode: str) -> None:
    cert, key = make_cert(relay_env.tmp, "hop")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    hops = contoso_relay(relay_env, sinks)
    hops["internet"].stop()
    secure = sinks(tls_context=server_ctx)
    relay_env.relay["hops"]["internet"].update(port=secure.port, starttls=mode)
    if mode == "required":
        relay_env.relay["hops"]["internet"]["ca_file"] = "hop.pem"  # verified against it
    relay_env.start()
    relay_env.send("ted@example.org", ["someone@partner.example"], message("sealed"))
    got = secure.wait()[0]
    assert got.message["Subject"] == "sealed"
    assert secure.handler.tls_sessions == [True]


def test_required_starttls_to_a_hop_without_it_defers(relay_env: RelayEnv,
                                                      sinks: Callable[..., Sink],
                                                      contoso: Hub) -> None:
    hops = contoso_relay(relay_env, sinks)
    relay_env.relay["hops"]["internet"]["starttls"] = "required"
    relay_env.start()
    relay_env.send("ted@example.org", ["someone@partner.example"], message())
    deferred = relay_env.wait_event("deferred")[0]
    assert deferred["status"] == "4.7.0"
    assert hops["internet"].messages == []
