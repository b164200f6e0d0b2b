"""Mail to contacts dirsync imported from foreign post offices (MS Mail, X.400).

Such a contact has no ``mail``: only its foreign address, as target address
and proxy address, and dirsync's ownership marker. Addressed by that foreign
address (typed, one-off, O/R), by its IMCEA form, or as the relay's route
check shows, it must travel to the foreign gateway with its foreign address.
A real slapd hub, ``dirsync relay serve`` as a process, real next hops and
swaks as the client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dirsync.addresses.imcea import encode_imcea
from dirsync.cli.main import main
from dirsync.relay.gateway import read_gateway_message

from .helpers import Hub, RelayEnv, ServeProcess, Sink, contoso_relay, swaks

LCHEN = "MICROSOFT/PO1/LCHEN"
WEI_X400 = "c=US;a= ;p=Contoso;o=SiteB;s=Chen;g=Wei;"
WEI_STD = "/G=Wei/S=Chen/O=SiteB/PRMD=Contoso/ADMD= /C=US/"


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    logger = logging.getLogger("dirsync")
    saved = logger.handlers[:], logger.level
    yield
    logger.handlers[:], logger.level = saved[0], saved[1]


@pytest.fixture
def imported(contoso: Hub) -> dict[str, str]:
    """Contacts as the msmail and x400 import mappings write them."""
    return {
        "lchen": contoso.add("Li Chen", proxies=(f"MS:{LCHEN}",), target=f"MS:{LCHEN}",
                             source="msmail-po1"),
        "wei": contoso.add("Wei Chen", proxies=(f"X400:{WEI_X400}",),
                           target=f"X400:{WEI_X400}", source="x400-siteb"),
    }


@pytest.fixture
def hops(relay_env: RelayEnv, sinks: Callable[..., Sink],
         imported: dict[str, str]) -> dict[str, Sink]:
    hops = contoso_relay(relay_env, sinks)
    relay_env.relay["routes"].append({"address_space": "MS:MICROSOFT/*", "hop": "msgw",
                                      "cost": 5})
    relay_env.write()
    return hops


def route(env: RelayEnv, capsys: pytest.CaptureFixture[str],
          address: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["-c", str(env.config_path), "relay", "route", address, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("address", [
    f"MS:{LCHEN}",                                     # its proxy and target address
    f"ms:{LCHEN.lower()}",                             # as a person may type it
    encode_imcea("MS", LCHEN, "example.org"),          # its IMCEA form at the relay's domain
    f"Li Chen[MS:{LCHEN}]",                            # a one-off address
])
def test_route_an_imported_ms_mail_contact(relay_env: RelayEnv, hops: dict[str, Sink],
                                           imported: dict[str, str],
                                           capsys: pytest.CaptureFixture[str],
                                           address: str) -> None:
    code, result = route(relay_env, capsys, address)
    assert code == 0, result
    assert result["hub_entry"] == imported["lchen"]
    assert result["status"] is None
    assert result["hop"] == "msgw"
    assert result["hop_address"] == encode_imcea("MS", LCHEN, "msgw.example.net")


@pytest.mark.parametrize("address", [f"X400:{WEI_X400}", WEI_STD,
                                     encode_imcea("X400", WEI_X400, "example.org")])
def test_route_an_imported_x400_contact(relay_env: RelayEnv, hops: dict[str, Sink],
                                        imported: dict[str, str],
                                        capsys: pytest.CaptureFixture[str],
                                        address: str) -> None:
    code, result = route(relay_env, capsys, address)
    assert code == 0, result
    assert result["hub_entry"] == imported["wei"]
    assert (result["hop"], result["hop_kind"]) == ("x400out", "x400")
    assert result["hop_address"] == WEI_STD


def test_mail_reaches_the_foreign_gateways_with_the_foreign_addresses(
        relay_env: RelayEnv, hops: dict[str, Sink], imported: dict[str, str],
        serve: Callable[[], ServeProcess]) -> None:
    relay = serve()
    for to in (encode_imcea("MS", LCHEN, "example.org"),
               encode_imcea("X400", WEI_X400, "example.org")):
        done = swaks(relay.port, "--from", "ted@example.org", "--to", to,
                     "--header", f"Subject: to {to[:12]}")
        assert done.returncode == 0, done.stdout
    # MS Mail: through its SMTP gateway, encapsulated at the gateway's domain.
    [got] = hops["msgw"].wait()
    assert got.recipients == [encode_imcea("MS", LCHEN, "msgw.example.net")]
    # X.400: a file in the gateway queue, addressed to the contact's O/R address.
    folder = relay_env.tmp / "var" / "x400-out"
    relay_env.wait_event("delivered")
    [path] = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert [r.canonical() for r in read_gateway_message(path).recipients] == [WEI_X400]
    assert f"X400-Recipients: {WEI_STD}" in path.read_text()
    translated = {e["to"]: e["entry"] for e in relay_env.events("translated")}
    assert translated == {f"MS:{LCHEN}": imported["lchen"], f"X400:{WEI_X400}": imported["wei"]}
    assert relay_env.events("failed") == []
