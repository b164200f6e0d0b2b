"""The [relay] table: typed, defaulted, every problem reported with its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirsync.errors import ConfigError
from dirsync.relay.config import (
    SmtpHopConfig,
    X400HopConfig,
    load_relay_config,
    parse_duration,
    parse_size,
)

from .helpers import toml_dumps


def write(tmp_path: Path, relay: dict[str, Any], hub: dict[str, Any] | None = None) -> Path:
    (tmp_path / "hub.pw").write_text("secret\n")
    doc = {"directories": {"hub": hub or {"kind": "ldap", "url": "ldap://127.0.0.1:389",
                                          "base": "dc=example,dc=org",
                                          "bind_dn": "cn=admin,dc=example,dc=org",
                                          "password_file": "hub.pw"}},
           "relay": relay}
    path = tmp_path / "dirsync.toml"
    path.write_text(toml_dumps(doc))
    return path


MINIMAL: dict[str, Any] = {
    "hub": "hub",
    "hops": {"out": {"host": "mx.example.net"}},
    "routes": [{"address_space": "SMTP:*", "hop": "out"}],
}


def test_defaults(tmp_path: Path) -> None:
    config = load_relay_config(write(tmp_path, MINIMAL))
    assert config.hub.password == "secret"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 2525)
    assert config.queue == tmp_path / "var/relay/queue"
    assert config.max_hops == 50
    assert config.max_queue_lifetime == 5 * 86400
    # 5 minutes, doubling, capped at about 67 minutes.
    assert [config.retry_delay(n) for n in range(1, 7)] == [300, 600, 1200, 2400, 4000, 4000]
    hop = config.hops["out"]
    assert isinstance(hop, SmtpHopConfig) and (hop.port, hop.starttls) == (25, "opportunistic")
    assert config.routes[0].cost == 1


def test_everything_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PW", "from-env")
    relay = dict(MINIMAL, listen="[::1]:2526", hostname="relay.example.org",
                 domains=["Example.ORG"], max_hops=10, retry_initial="1m", retry_max="2h",
                 retry_factor=3, max_queue_lifetime="2d", max_message_size="10MB",
                 x400={"global_domain": "c=US;a= ;p=Contoso", "gateway": "O=gw;P=abc;C=gb",
                       "mappings": [{"domain": "example.org",
                                     "or_address": "c=US;a= ;p=Contoso;o=Exchange",
                                     "direction": "to-x400"}],
                       "pickup": "in", "pickup_interval": "2s"})
    relay["hops"] = dict(relay["hops"], gw={"kind": "x400", "path": "out"})
    config = load_relay_config(write(tmp_path, relay, {
        "kind": "ldap", "url": "ldapi:///", "base": "dc=x", "bind_dn": "cn=a",
        "password_env": "HUB_PW", "page_size": 500}))  # keys the relay does not own pass
    assert config.hub.password == "from-env"
    assert (config.listen_host, config.listen_port) == ("::1", 2526)
    assert config.domains == ("example.org",) and config.imcea_domain == "example.org"
    assert config.postmaster == "postmaster@example.org"
    assert config.retry_delay(1) == 60 and config.retry_delay(2) == 180
    assert config.max_message_size == 10 << 20
    assert isinstance(config.hops["gw"], X400HopConfig)
    assert config.x400.pickup == tmp_path / "in"
    [rule] = config.x400.mappings
    assert rule.to_x400 and not rule.to_rfc822


def test_every_problem_with_its_key_path(tmp_path: Path) -> None:
    relay = {
        "hub": "missing", "listen": "nowhere", "max_hops": 0, "retry_initial": "soon",
        "frobnicate": True, "auth": {"users_file": "nope"},
        "hops": {"a": {"kind": "pigeon"}, "b": {"host": "x", "port": 70000},
                 "c": {"host": "x", "starttls": "sometimes"}, "q": {"kind": "x400", "path": "o"}},
        "routes": [{"address_space": "MS:MICROSOFT/*", "hop": "b"},
                   {"address_space": "nonsense", "hop": "z", "cost": 0}],
        "x400": {"gateway": "not an O/R", "mappings": [{"domain": "x.org"}]},
    }
    with pytest.raises(ConfigError) as info:
        load_relay_config(write(tmp_path, relay))
    problems = info.value.problems
    expected = [
        "relay.hub: no [directories.missing] table",
        "relay.listen: 'nowhere': expected HOST:PORT",
        "relay.max_hops: must be at least 1",
        "relay.retry_initial: 'soon' is not a duration",
        "relay.frobnicate: unknown key",
        "relay.auth.users_file:",
        "relay.auth: AUTH is offered only over TLS",
        "relay.hops.a.kind: must be smtp or x400",
        "relay.hops.b.port: must be between 1 and 65535",
        "relay.hops.c.starttls: must be off, opportunistic or required",
        "relay.routes[0].hop: MS addresses reach SMTP hop 'b' encapsulated",
        "relay.routes[1].address_space: 'nonsense': expected TYPE:pattern",
        "relay.routes[1].hop: no hop named 'z'",
        "relay.routes[1].cost: must be between 1 and 100",
        "relay.x400.gateway:",
        "relay.x400.mappings[0].or_address: required",
        "relay.x400.global_domain: required with an X.400 hop",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert str(tmp_path / "dirsync.toml") in str(info.value)


@pytest.mark.parametrize("hub, problem", [
    ({"kind": "csv", "path": "x.csv"}, "directories.hub.kind: the relay's hub must be an ldap"),
    ({"kind": "ldap", "url": "http://x", "base": "dc=x"}, "directories.hub.url: must be"),
    ({"kind": "ldap", "url": "ldap://x", "base": "dc=x", "bind_dn": "cn=a", "password": "p"},
     "directories.hub.password: secrets never go in the config file"),
    ({"kind": "ldap", "url": "ldap://x", "base": "dc=x", "bind_dn": "cn=a",
      "password_env": "DIRSYNC_TEST_UNSET_VAR"},
     "directories.hub.password_env: environment variable DIRSYNC_TEST_UNSET_VAR"),
    ({"kind": "ldap", "url": "ldap://x", "base": "dc=x", "bind_dn": "cn=a",
      "password_file": "absent.pw"}, "directories.hub.password_file: cannot read"),
    ({"kind": "ldap", "url": "ldap://x"}, "directories.hub.base: required"),
])
def test_hub_problems(tmp_path: Path, hub: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_relay_config(write(tmp_path, MINIMAL, hub))
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_missing_file_table_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_relay_config(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[relay\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_relay_config(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text("state = 'x'\n")
    with pytest.raises(ConfigError, match=r"missing table \(\[relay\]\)"):
        load_relay_config(tmp_path / "empty.toml")


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("5d", 432000.0),
    ("250ms", 0.25), ("4000s", 4000.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "5 minutes", "5x", True, -1, "m5"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_duration(bad)


@pytest.mark.parametrize("text, size", [(1000, 1000), ("32MB", 32 << 20), ("10 KiB", 10240),
                                        ("1g", 1 << 30), ("512", 512)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_postmaster_and_hostname_must_be_addresses(tmp_path: Path) -> None:
    relay = {**MINIMAL, "postmaster": "postmaster, x@y.example",
             "hostname": "relay example"}
    with pytest.raises(ConfigError) as info:
        load_relay_config(write(tmp_path, relay))
    problems = info.value.problems
    assert any(p.startswith("relay.postmaster: must be an address") for p in problems)
    assert any(p.startswith("relay.hostname: must be a host name") for p in problems)
