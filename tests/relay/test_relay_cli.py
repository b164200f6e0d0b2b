"""``dirsync relay route`` and ``hash-password``, in-process through ``dirsync.cli.main.main``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dirsync.addresses.imcea import encode_imcea
from dirsync.cli.main import main
from dirsync.relay.auth import verify_password

from .helpers import CAROL_X400, Hub, RelayEnv, Sink, contoso_relay


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    # main() points the "dirsync" logger at the stderr of the moment;
    # restore it so later tests do not log into a closed capture stream.
    logger = logging.getLogger("dirsync")
    saved = logger.handlers[:], logger.level
    yield
    logger.handlers[:], logger.level = saved[0], saved[1]


@pytest.fixture
def route(relay_env: RelayEnv, sinks: Callable[..., Sink], contoso: Hub,
          capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    contoso_relay(relay_env, sinks)
    relay_env.write()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["-c", str(relay_env.config_path), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def as_json(run: Callable[..., tuple[int, str, str]], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run("--json", "relay", "route", *args)
    return code, json.loads(out)


def test_route_a_contact_to_its_target(route: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = route("relay", "route", "bob@example.org")
    assert code == 0
    assert "route:       MS:MICROSOFT/PO2/* (cost 1)" in out
    assert "next hop:    msgw (smtp)" in out
    assert "hop address: IMCEAMS-MICROSOFT_PO2_BOB@msgw.example.net" in out


def test_route_json(route: Callable[..., tuple[int, str, str]]) -> None:
    code, result = as_json(route, "carol@example.org", "--sender", "ted@example.org")
    assert code == 0
    assert result["hub_entry"].startswith("cn=Carol Smith,")
    route_text = "X400:c=US;a= ;p=Contoso;o=SiteB;* (cost 1) -> x400out"
    assert result["candidates"] == [{"address": f"X400:{CAROL_X400}", "routes": [route_text]}]
    assert (result["route"], result["hop"], result["hop_kind"]) \
        == ("X400:c=US;a= ;p=Contoso;o=SiteB;*", "x400out", "x400")
    assert result["hop_address"] == "/G=Carol/S=Smith/O=SiteB/PRMD=Contoso/ADMD= /C=US/"
    assert result["hop_sender"] == "/G=Ted/S=Bremer/O=Exchange/PRMD=Contoso/ADMD= /C=US/"
    assert result["status"] is None


@pytest.mark.parametrize("address", [
    "Zed Zulu[X400:c=US;a= ;p=Contoso;o=SiteB;s=Zulu;g=Zed;]",
    "X400:/G=Zed/S=Zulu/O=SiteB/PRMD=Contoso/ADMD= /C=US/",
    "/G=Zed/S=Zulu/O=SiteB/PRMD=Contoso/ADMD= /C=US/",
    encode_imcea("X400", "c=US;a= ;p=Contoso;o=SiteB;s=Zulu;g=Zed;", "example.org"),
])
def test_foreign_address_without_hub_entry_travels_as_one_off(
        route: Callable[..., tuple[int, str, str]], address: str) -> None:
    code, result = as_json(route, address)
    assert code == 0
    assert result["hub_entry"] is None
    assert result["one_off"].endswith("[X400:c=US;a= ;p=Contoso;o=SiteB;s=Zulu;g=Zed;]")
    assert result["address"] == encode_imcea("X400", "c=US;a= ;p=Contoso;o=SiteB;s=Zulu;g=Zed;",
                                             "example.org")
    assert result["hop_address"] == "/G=Zed/S=Zulu/O=SiteB/PRMD=Contoso/ADMD= /C=US/"


def test_a_hub_users_foreign_proxy_routes_home(route: Callable[..., tuple[int, str, str]]) -> None:
    # A reply to Ted's MS proxy comes in encapsulated; it goes to Ted, not back to MS.
    code, result = as_json(route, "MS:EXCHANGE/HUB/TEDB")
    assert code == 0
    assert result["hub_entry"].startswith("cn=Ted Bremer,")
    assert (result["hop"], result["hop_address"]) == ("internal", "ted@example.org")


@pytest.mark.parametrize("address, status", [
    ("dave@example.org", "5.1.1"),         # in the hub, but its target has no route
    ("erin@example.org", "5.1.3"),         # in the hub, target is not an O/R address
    ("stranger@elsewhere.com", "5.4.4"),   # nowhere
])
def test_route_that_would_get_a_report(route: Callable[..., tuple[int, str, str]],
                                       address: str, status: str) -> None:
    code, out, _ = route("relay", "route", address)
    assert code == 1
    assert f"result:      non-delivery report {status}" in out


def test_sender_translation_shown(route: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = route("relay", "route", "bob@example.org", "--sender", "ted@example.org")
    assert code == 0
    assert "sender:      ted@example.org -> IMCEAMS-EXCHANGE_HUB_TEDB@example.org" in out


def test_bad_address_is_bad_input(route: Callable[..., tuple[int, str, str]]) -> None:
    code, _, err = route("relay", "route", "not an address")
    assert code == 2
    assert "is not an address" in err


def test_bad_config_names_every_problem(relay_env: RelayEnv,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    relay_env.relay.update(max_hops=0, routes=[{"address_space": "nonsense", "hop": "nowhere"}])
    relay_env.write()
    code = main(["-c", str(relay_env.config_path), "relay", "route", "a@b.c"])
    err = capsys.readouterr().err
    assert code == 2
    assert "relay.max_hops: must be at least 1" in err
    assert "relay.routes[0].address_space" in err
    assert "relay.routes[0].hop: no hop named 'nowhere'" in err


def test_hash_password(monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["relay", "hash-password", "--stdin"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("pbkdf2-sha256$")
    assert verify_password("s3cret", hashed)
    assert not verify_password("other", hashed)


def test_json_after_the_address(route: Callable[..., tuple[int, str, str]]) -> None:
    before = route("--json", "relay", "route", "bob@example.org")
    after = route("relay", "route", "bob@example.org", "--json")
    assert after == before and after[0] == 0
    assert json.loads(after[1])["hop_address"] == "IMCEAMS-MICROSOFT_PO2_BOB@msgw.example.net"
