"""A hub user's changed address reaches the partner, against a real slapd hub and an
LDAP partner: the generated SMTP address follows ``mail`` (written to the hub or
kept in the state store), the old one stays a secondary, and a primary set in the
hub is the truth; incremental and full runs alike."""

from __future__ import annotations

from pathlib import Path

import ldap
import pytest

from dirsync.entry import normalize_dn
from dirsync.state.store import StateStore
from dirsync.sync.proxygen import AssignmentStore
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.twoway import (
    FIXTURES,
    entries,
    kinds,
    ldap_directory,
    load_ldif,
    write_config,
)
from dirsync.testing.twoway import (
    json_sync as sync,
)


class Setup:
    def __init__(self, slapd: SlapdServer, base: str, folder: Path) -> None:
        self.slapd, self.folder = slapd, folder
        load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
        self.people = f"ou=People,{base}"
        partner = f"ou=Partner,{base}"
        slapd.add_ou(partner)
        self.container = f"ou=Contoso,{partner}"
        self.config = write_config(folder, {
            "hub": ldap_directory(slapd, folder, base),
            "partner": ldap_directory(slapd, folder, partner)}, [{
                "name": "partner", "foreign": "partner", "hub": "hub",
                "direction": "export", "mapping": "generic-ldap",
                "export_containers": [self.people], "foreign_container": self.container}])

    def dn(self, uid: str) -> str:
        return f"uid={uid},{self.people}"

    def hub(self, uid: str) -> dict[str, list[str]]:
        return entries(self.slapd, self.dn(uid), attrs=["*", "entryUUID"])[self.dn(uid)]

    def modify(self, uid: str, *mods: tuple[int, str, list[bytes]]) -> None:
        conn = self.slapd.connect()
        try:
            conn.modify_s(self.dn(uid), list(mods))
        finally:
            conn.unbind_s()

    def partner_mail(self, uid: str) -> list[str]:
        anchor = self.hub(uid)["entryUUID"][0]
        found = entries(self.slapd, self.container, f"(dirsyncAnchor={anchor})", attrs=["mail"])
        assert len(found) == 1, found
        return next(iter(found.values()))["mail"]

    def view(self) -> dict[str, dict[str, list[str]]]:
        found = entries(self.slapd, self.container, "(dirsyncSource=*)", attrs=["*"])
        return {normalize_dn(dn): {k.lower(): sorted(v) for k, v in a.items()}
                for dn, a in found.items()}

    def remembered(self, uid: str) -> tuple[str, tuple[str, ...]]:
        with StateStore(self.folder / "var" / "state.sqlite") as state:
            memo = AssignmentStore(state).load("hub", "SMTP")[self.hub(uid)["entryUUID"][0]]
        return memo.address, memo.former


@pytest.fixture
def setup(slapd: SlapdServer, base: str, tmp_path: Path) -> Setup:
    found = Setup(slapd, base, tmp_path)
    # Kim may be stamped (proxy_writeback = "marked"); Sam may not.
    found.modify("kabercrombie", (ldap.MOD_ADD, "objectClass", [b"dirsyncObject"]))
    return found


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_a_changed_mail_reaches_the_partner_and_the_old_address_stays_secondary(
        setup: Setup, capsys: pytest.CaptureFixture[str], mode: str) -> None:
    first = sync(setup.config, capsys)
    assert first["exit"] == 0, first
    assert setup.partner_mail("swu") == ["swu@contoso.example"]
    assert setup.hub("kabercrombie")["proxyAddresses"] == ["SMTP:kabercrombie@contoso.example"]
    assert "proxyAddresses" not in setup.hub("swu")
    setup.modify("swu", (ldap.MOD_REPLACE, "mail", [b"sam.wu@contoso.example"]))
    setup.modify("kabercrombie", (ldap.MOD_REPLACE, "mail", [b"kim.a@contoso.example"]))

    line = sync(setup.config, capsys, *(["--full"] if mode == "full" else []))
    assert line["mode"] == mode and line["exit"] == 0, line
    assert kinds(line) == (0, 2, 0, 0), line
    assert setup.partner_mail("swu") == ["sam.wu@contoso.example"]
    assert setup.partner_mail("kabercrombie") == ["kim.a@contoso.example"]
    # Written where allowed, as a recipient policy does: new primary, old secondary.
    assert sorted(setup.hub("kabercrombie")["proxyAddresses"]) == [
        "SMTP:kim.a@contoso.example", "smtp:kabercrombie@contoso.example"]
    assert line["message"] == "1 generated proxy address(es) written to the hub"
    report = (Path(line["report"]) / "report.json").read_text(encoding="utf-8")
    for old, new in (("swu", "sam.wu"), ("kabercrombie", "kim.a")):
        assert (f"SMTP:{new}@contoso.example replaces SMTP:{old}@contoso.example, which the "
                "hub entry no longer makes; the old address stays a secondary") in report
    # Kept in the state store where not: the old address with it, still Sam's.
    assert "proxyAddresses" not in setup.hub("swu")
    assert setup.remembered("swu") == ("sam.wu@contoso.example", ("swu@contoso.example",))

    # The other mode has nothing left to do: both reach the same partner.
    reached = setup.view()
    again = sync(setup.config, capsys, *(["--full"] if mode == "incremental" else []))
    assert again["exit"] == 0 and kinds(again) == (0, 0, 0, 0), again
    assert setup.view() == reached
    assert kinds(sync(setup.config, capsys)) == (0, 0, 0, 0)


def test_a_primary_set_in_the_hub_is_the_truth(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(setup.config, capsys)["exit"] == 0
    # The administrator gives Kim an address of her own: it follows, ...
    setup.modify("kabercrombie", (ldap.MOD_REPLACE, "proxyAddresses",
                                  [b"SMTP:kimberly@contoso.example",
                                   b"smtp:kabercrombie@contoso.example"]))
    line = sync(setup.config, capsys)
    assert line["exit"] == 0 and kinds(line) == (0, 1, 0, 0), line
    assert setup.partner_mail("kabercrombie") == ["kimberly@contoso.example"]
    # ... and a later change of mail does not override it, nor touch it.
    setup.modify("kabercrombie", (ldap.MOD_REPLACE, "mail", [b"kim.a@contoso.example"]))
    line = sync(setup.config, capsys)
    assert line["exit"] == 0 and kinds(line) == (0, 0, 0, 0), line
    assert setup.partner_mail("kabercrombie") == ["kimberly@contoso.example"]
    assert sorted(setup.hub("kabercrombie")["proxyAddresses"]) == [
        "SMTP:kimberly@contoso.example", "smtp:kabercrombie@contoso.example"]


def test_an_old_address_never_goes_to_someone_else(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Sam's former address stays his (replies to old mail reach him): a new
    person whose template makes it gets it with a number."""
    assert sync(setup.config, capsys)["exit"] == 0
    setup.modify("swu", (ldap.MOD_REPLACE, "mail", [b"sam.wu@contoso.example"]))
    assert sync(setup.config, capsys)["exit"] == 0
    conn = setup.slapd.connect()
    try:
        conn.add_s(setup.dn("swunew"), [
            ("objectClass", [b"inetOrgPerson"]), ("uid", [b"swunew"]), ("cn", [b"Sue Wu"]),
            ("sn", [b"Wu"]), ("mail", [b"swu@contoso.example"])])
    finally:
        conn.unbind_s()
    line = sync(setup.config, capsys)
    assert line["exit"] == 0 and kinds(line) == (1, 0, 0, 0), line
    # (swu2@ is the other Sam Wu's.)
    assert setup.partner_mail("swunew") == ["swu3@contoso.example"]
