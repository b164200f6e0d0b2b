"""Foreign names of exported recipients, against a real slapd hub: a second person
with a name already exported gets a readable, stable, unique name (the department,
``Sam Wu (HR)``, then ``Sam Wu (2)``), and incremental and full runs reach the same
foreign side, into a foreign LDAP directory and into a foreign LDIF file."""

from __future__ import annotations

from pathlib import Path

import ldap
import pytest

from dirsync.entry import Entry, normalize_dn, rdn_values
from dirsync.ldif.io import LDIFReader
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

PEOPLE = 24        # people in the fixture's ou=People, two of them called Sam Wu


class Setup:
    """The fixture's people in a slapd hub, exported with generic-ldap into a
    partner's LDAP subtree of the same server or into an LDIF file."""

    def __init__(self, slapd: SlapdServer, base: str, folder: Path, foreign: str) -> None:
        self.slapd, self.base, self.folder, self.kind = slapd, base, folder, foreign
        load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
        self.people = f"ou=People,{base}"
        hub = ldap_directory(slapd, folder, base)
        if foreign == "ldap":
            partner = f"ou=Partner,{base}"
            slapd.add_ou(partner)
            self.container = f"ou=Contoso,{partner}"
            directory = ldap_directory(slapd, folder, partner)
        else:
            self.container = "ou=Contoso,o=Partner"
            directory = {"kind": "ldif", "path": "partner.ldif", "base": "o=Partner"}
        self.config = write_config(folder, {"hub": hub, "partner": directory}, [{
            "name": "partner", "foreign": "partner", "hub": "hub", "direction": "export",
            "mapping": "generic-ldap", "export_containers": [self.people],
            "foreign_container": self.container}])

    def person(self, uid: str) -> str:
        return f"uid={uid},{self.people}"

    def uuid(self, uid: str) -> str:
        return entries(self.slapd, self.person(uid))[self.person(uid)]["entryUUID"][0]

    def names(self) -> dict[str, str]:
        """Hub entryUUID -> the RDN value of its foreign entry."""
        return {attrs["dirsyncanchor"][0]: attrs["rdn"][0] for attrs in self.view().values()}

    def view(self) -> dict[str, dict[str, list[str]]]:
        """The exported entries, by normalized DN, attribute names in lower case."""
        if self.kind == "ldap":
            found = entries(self.slapd, self.container, "(dirsyncSource=*)", attrs=["*"])
        else:
            found = {}
            with LDIFReader(str(self.folder / "partner.ldif")) as reader:
                for record in reader:
                    if isinstance(record, Entry) and record.first("dirsyncSource"):
                        found[record.dn] = {k: record.texts(k) for k in record.names()}
        view = {}
        for dn, attrs in found.items():
            view[normalize_dn(dn)] = {k.lower(): sorted(v) for k, v in attrs.items()}
            view[normalize_dn(dn)]["rdn"] = [rdn_values(dn)[0][1]]
        return view

    def add_person(self, uid: str, cn: str, ou: str = "Sales") -> None:
        conn = self.slapd.connect()
        try:
            given, sn = cn.split(" ", 1)
            conn.add_s(self.person(uid), [
                ("objectClass", [b"inetOrgPerson"]), ("uid", [uid.encode()]),
                ("cn", [cn.encode()]), ("sn", [sn.encode()]), ("givenName", [given.encode()]),
                ("displayName", [cn.encode()]), ("ou", [ou.encode()]),
                ("mail", [f"{uid}@contoso.example".encode()])])
        finally:
            conn.unbind_s()

    def delete(self, uid: str) -> None:
        conn = self.slapd.connect()
        try:
            conn.delete_s(self.person(uid))
        finally:
            conn.unbind_s()


@pytest.fixture(params=["ldap", "ldif"])
def setup(request: pytest.FixtureRequest, slapd: SlapdServer, base: str,
          tmp_path: Path) -> Setup:
    return Setup(slapd, base, tmp_path, request.param)


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_a_second_person_with_an_exported_name_is_added_by_either_mode_alike(
        setup: Setup, capsys: pytest.CaptureFixture[str], mode: str) -> None:
    """The second Sam Wu arrives after the first was exported: an incremental run
    adds it as a full run does (it used to be a conflict on every incremental run)."""
    setup.delete("swu2")
    first = sync(setup.config, capsys)
    assert first["mode"] == "full" and first["counts"]["add"] == PEOPLE - 1, first
    setup.add_person("swu3", "Sam Wu", ou="HR")
    line = sync(setup.config, capsys, *(["--full"] if mode == "full" else []))
    assert line["mode"] == mode and line["exit"] == 0, line
    assert kinds(line) == (1, 0, 0, 0) and line["counts"]["conflict"] == 0
    names = setup.names()
    assert names[setup.uuid("swu")] == "Sam Wu"
    assert names[setup.uuid("swu3")] == "Sam Wu (HR)"
    # The other mode finds nothing left to do: both reach the same foreign side.
    reached = setup.view()
    again = sync(setup.config, capsys, *(["--full"] if mode == "incremental" else []))
    assert again["exit"] == 0 and kinds(again) == (0, 0, 0, 0), again
    assert setup.view() == reached


def test_a_disambiguated_name_is_readable_unique_and_stays_with_its_entry(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.delete("swu2")
    first = sync(setup.config, capsys)
    assert first["exit"] == 0 and first["counts"]["add"] == PEOPLE - 1, first
    # Three more Sam Wus in Sales, one at a time, incrementally: the department,
    # then numbers; nobody's name moves.
    got = []
    for uid in ("swu3", "swu4", "swu5"):
        setup.add_person(uid, "Sam Wu", ou="Sales")
        line = sync(setup.config, capsys)
        assert line["mode"] == "incremental" and kinds(line) == (1, 0, 0, 0), line
        got.append(setup.names()[setup.uuid(uid)])
    assert got == ["Sam Wu (Sales)", "Sam Wu (2)", "Sam Wu (3)"]
    names = setup.names()
    assert names[setup.uuid("swu")] == "Sam Wu"
    # No anchor (an entryUUID) in anybody's name.
    assert not any(uuid in name for uuid in names for name in names.values())
    # The plain name's holder leaves: nobody is renamed, its name is free for the next.
    setup.delete("swu")
    line = sync(setup.config, capsys)
    assert kinds(line) == (0, 0, 0, 1), line
    setup.add_person("swu6", "Sam Wu", ou="Sales")
    line = sync(setup.config, capsys)
    assert kinds(line) == (1, 0, 0, 0), line
    names = setup.names()
    assert [names[setup.uuid(u)] for u in ("swu3", "swu4", "swu5", "swu6")] == [
        "Sam Wu (Sales)", "Sam Wu (2)", "Sam Wu (3)", "Sam Wu"]
    reached = setup.view()
    full = sync(setup.config, capsys, "--full")
    assert kinds(full) == (0, 0, 0, 0) and setup.view() == reached
    # A new department renames the one named by it, to the new one.
    conn = setup.slapd.connect()
    try:
        conn.modify_s(setup.person("swu3"), [(ldap.MOD_REPLACE, "ou", [b"Legal"])])
    finally:
        conn.unbind_s()
    line = sync(setup.config, capsys)
    assert kinds(line) == (0, 0, 1, 0), line
    assert setup.names()[setup.uuid("swu3")] == "Sam Wu (Legal)"
    assert setup.names()[setup.uuid("swu4")] == "Sam Wu (2)"


def test_a_hub_name_that_looks_numbered_is_never_shared(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A person really called "Sam Wu (2)" and the second Sam Wu: two names."""
    setup.add_person("swu5", "Sam Wu (2)")
    line = sync(setup.config, capsys)
    assert line["exit"] == 0 and line["counts"]["add"] == PEOPLE + 1, line
    sams = sorted(n for n in setup.names().values() if n.startswith("Sam Wu"))
    assert len(sams) == 3 and len(set(map(str.casefold, sams))) == 3, sams
    again = sync(setup.config, capsys, "--full")
    assert kinds(again) == (0, 0, 0, 0), again


def test_names_of_an_earlier_version_are_renamed(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A partner entry named with its anchor, as earlier versions did, is renamed."""
    setup = Setup(slapd, base, tmp_path, "ldap")
    assert sync(setup.config, capsys)["exit"] == 0
    second, attrs = next((dn, a) for dn, a in setup.view().items()
                         if a["rdn"][0].startswith("Sam Wu ("))
    anchor, name = attrs["dirsyncanchor"][0], attrs["rdn"][0]
    assert name in ("Sam Wu (HR)", "Sam Wu (Sales)")
    conn = slapd.connect()
    try:
        conn.rename_s(second, f"cn=Sam Wu ({anchor})", delold=1)
    finally:
        conn.unbind_s()
    line = sync(setup.config, capsys, "--full")
    assert kinds(line) == (0, 0, 1, 0), line
    assert setup.names()[anchor] == name
