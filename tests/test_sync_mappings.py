"""Every ready mapping synced both ways on its fixture, against a real slapd hub.

Each foreign system's recipients become contacts in the hub's import
container with their foreign address as target and primary proxy address;
the site's people and groups (and nothing the connection imported) go to the
foreign system with an address of its type; a second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dirsync.ldif.io import LDIFReader
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.twoway import (
    FIXTURES,
    changes,
    copy_fixture,
    counts,
    entries,
    ldap_directory,
    load_ldif,
    read_csv,
    rows_by,
    sync,
    write_config,
)


@dataclass
class Case:
    mapping: str
    fixture: str
    key: str                  # the CSV key column ("" for a directory)
    foreign_contact: tuple[str, str]   # (cn in the hub, its target address)
    exported: list[str]       # foreign keys (or RDN values) of hub people


CASES = [
    Case("msmail", "msmail-po1.csv", "Address",
         ("Ted Bremer", "MS:MICROSOFT/PO1/TBREMER"),
         ["MICROSOFT/EXCHANGE/SWU", "MICROSOFT/EXCHANGE/SWU2", "MICROSOFT/EXCHANGE/SITESALES"]),
    Case("notes", "notes-names.csv", "FullName",
         ("Amelia Clarke", "NOTES:Amelia Clarke/Contoso@ContosoNotes"),
         ["Sam Wu", "Sam Wu2", "Uwe Kübler", "Site Sales"]),
    Case("groupwise", "groupwise.csv", "Address",
         ("Abigail Turner", "GWISE:UTAH.PROVO.aturner"),
         ["EXCHANGE.CONNECTOR.swu", "EXCHANGE.CONNECTOR.ukubler", "EXCHANGE.CONNECTOR.sitesales"]),
    Case("ccmail", "ccmail.csv", "Address",
         ("Ruth Adams", "CCMAIL:Adams, Ruth at DALLAS"),
         ["Wu, Sam at EXCHANGE", "Wu, Sam2 at EXCHANGE", "Kubler, Uwe at EXCHANGE",
          "Site Sales at EXCHANGE"]),
    Case("x400", "x400.ldif", "",
         ("Jean Dupont", "X400:c=FR;a=ATLAS;p=Fabrikam;o=Paris;s=Dupont;g=Jean;"),
         ["c=US;a= ;p=Contoso;o=Exchange;s=Wu;g=Sam;",
          "c=US;a= ;p=Contoso;o=Exchange;s=Wu2;g=Sam;",
          "c=US;a= ;p=Contoso;o=Exchange;s=Kubler;g=Uwe;"]),
    Case("generic-ldap", "fabrikam.ldif", "",
         ("Ted Bremer", "SMTP:tbremer@fabrikam.example"),
         ["swu@contoso.example", "swu2@contoso.example", "ukubler@contoso.example"]),
]


def fixture_recipients(case: Case) -> int:
    if case.key:
        return len(read_csv(FIXTURES / case.fixture))
    with LDIFReader(str(FIXTURES / case.fixture)) as reader:
        return sum(1 for entry in reader
                   if {"inetorgperson", "groupofnames"}
                   & {c.lower() for c in entry.texts("objectClass")})  # type: ignore[union-attr]


@pytest.mark.parametrize("case", CASES, ids=[c.mapping for c in CASES])
def test_a_ready_mapping_both_ways(slapd: SlapdServer, base: str, tmp_path: Path,
                                   case: Case) -> None:
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    people, groups = f"ou=People,{base}", f"ou=Groups,{base}"
    container = f"ou={case.mapping},ou=Contacts,{base}"
    connection: dict[str, Any] = {
        "name": case.mapping, "foreign": "foreign", "hub": "hub", "mapping": case.mapping,
        "direction": "both", "import_container": container,
        # The import container is exported from too: loop prevention keeps it home.
        "export_containers": [people, groups, f"ou=Contacts,{base}"]}
    if case.key:
        path = copy_fixture(case.fixture, tmp_path)
        foreign: dict[str, Any] = {"kind": "csv", "path": path.name, "key": case.key}
    elif case.mapping == "x400":
        path = copy_fixture(case.fixture, tmp_path)
        foreign = {"kind": "ldif", "path": path.name, "base": "o=Fabrikam,c=FR"}
        connection["foreign_container"] = "ou=Exchange,o=Fabrikam,c=FR"
    else:
        partner = f"ou=Foreign,{base}"
        slapd.add_ou(partner)
        # The fixture is an LDIF export: its groups carry mail, which a server
        # takes with extensibleObject.
        load_ldif(slapd, FIXTURES / case.fixture, partner, fixture_base="c=US",
                  extra_classes=["extensibleObject"])
        foreign = ldap_directory(slapd, tmp_path, f"o=Fabrikam,{partner}")
        connection["foreign_container"] = f"ou=Contoso,o=Fabrikam,{partner}"
    config = write_config(tmp_path, {"hub": ldap_directory(slapd, tmp_path, base),
                                     "foreign": foreign}, [connection])

    first = sync(config)
    assert [r.status for r in first] == ["ok", "ok"], [r.message for r in first]
    assert counts(first, "import")["add"] == fixture_recipients(case)
    assert counts(first, "export")["add"] == 26       # 24 people and 2 groups, no contact

    name, target = case.foreign_contact
    contact = entries(slapd, container, f"(cn={name})")
    assert len(contact) == 1, contact
    attrs = next(iter(contact.values()))
    assert attrs["targetAddress"] == [target]
    assert target in attrs["proxyAddresses"]

    if case.key:
        rows = rows_by(path, case.key)
        assert set(case.exported) <= set(rows), sorted(rows)
        ours = [r for r in rows.values() if r["Sync Source"] == case.mapping]
    elif case.mapping == "x400":
        with LDIFReader(str(path)) as reader:
            ours = [e for e in reader
                    if e.first("dirsyncSource") == case.mapping]  # type: ignore[union-attr]
        boxes = {m for e in ours for m in e.texts("otherMailbox")}  # type: ignore[union-attr]
        assert {f"x400${a}" for a in case.exported} <= boxes, sorted(boxes)
    else:
        found_ldap = entries(slapd, connection["foreign_container"],
                             f"(dirsyncSource={case.mapping})")
        ours = list(found_ldap.values())
        mails = {m for e in found_ldap.values() for m in e.get("mail", [])}
        assert set(case.exported) <= mails, sorted(mails)
    assert len(ours) == 26

    second = sync(config)
    assert changes(second) == 0, [r.counts for r in second]
    assert counts(second, "import")["unchanged"] == fixture_recipients(case)
    assert counts(second, "export")["unchanged"] == 26
