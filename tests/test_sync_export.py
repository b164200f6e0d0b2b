"""The export direction against a real slapd hub: export containers and filters,
renames and deletes on a foreign CSV file and a foreign LDAP directory, proxy
addresses, no echo both ways, safety stops, plans, a file hub."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap
import pytest

from dirsync.cli.main import main
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
class Hub:
    slapd: SlapdServer
    base: str
    folder: Path

    @property
    def people(self) -> str:
        return f"ou=People,{self.base}"

    @property
    def groups(self) -> str:
        return f"ou=Groups,{self.base}"

    def person(self, uid: str) -> str:
        return f"uid={uid},{self.people}"

    def modify(self, dn: str, mods: list[tuple[int, str, Any]]) -> None:
        conn = self.slapd.connect()
        try:
            conn.modify_s(dn, mods)
        finally:
            conn.unbind_s()

    def delete(self, dn: str) -> None:
        conn = self.slapd.connect()
        try:
            conn.delete_s(dn)
        finally:
            conn.unbind_s()

    def attrs(self, dn: str) -> dict[str, list[str]]:
        found = entries(self.slapd, dn, attrs=["*", "entryUUID"])
        return next(iter(found.values()))

    def config(self, foreign: dict[str, Any], connection: dict[str, Any],
               name: str = "dirsync.toml") -> Path:
        table = {"name": "po1", "foreign": "foreign", "hub": "hub", "direction": "export",
                 "export_containers": [self.people, self.groups], **connection}
        return write_config(self.folder, {"hub": ldap_directory(self.slapd, self.folder,
                                                                self.base),
                                          "foreign": foreign}, [table], name)


@pytest.fixture
def hub(slapd: SlapdServer, base: str, tmp_path: Path) -> Hub:
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    return Hub(slapd, base, tmp_path)


def msmail(hub: Hub, **connection: Any) -> tuple[Path, Path]:
    """An export of the site's people and groups into MS Mail post office PO1."""
    csv_path = copy_fixture("msmail-po1.csv", hub.folder)
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "Address"},
                        {"mapping": "msmail", "variables": {"postoffice": "SITEA"}, **connection})
    return config, csv_path


NATIVE = {row["Address"]: row for row in read_csv(FIXTURES / "msmail-po1.csv")}


def native_rows(csv_path: Path) -> dict[str, dict[str, str]]:
    """The post office's own rows, as the fixture has them (columns the export added aside)."""
    return {k: {c: v for c, v in row.items() if c in NATIVE[k]}
            for k, row in rows_by(csv_path, "Address").items() if k in NATIVE}


def test_two_export_containers_and_a_filter_into_a_csv_post_office(hub: Hub) -> None:
    config, csv_path = msmail(hub, export_filter="(!(ou=HR))")
    results = sync(config)
    assert [r.direction for r in results] == ["export"]
    # 24 people less the 3 in HR, and the two groups of the second container.
    assert counts(results)["add"] == 23 and results[0].status == "ok"
    rows = rows_by(csv_path, "Address")
    assert native_rows(csv_path) == NATIVE          # the post office's own rows untouched
    sam = rows["MICROSOFT/SITEA/SWU"]
    assert (sam["Type"], sam["Network"], sam["Postoffice"], sam["Mailbox"]) == \
        ("user", "MICROSOFT", "SITEA", "SWU")
    assert (sam["Display Name"], sam["First Name"], sam["Last Name"]) == ("Sam Wu", "Sam", "Wu")
    assert sam["Sync Source"] == "po1"
    assert sam["Sync Anchor"] == hub.attrs(hub.person("swu"))["entryUUID"][0]
    assert rows["MICROSOFT/SITEA/UKUBLER"]["Last Name"] == "Kübler"   # the mailbox is ASCII
    assert not {"MICROSOFT/SITEA/KFURSE", "MICROSOFT/SITEA/TPLATE", "MICROSOFT/SITEA/SWU2"} \
        & set(rows)
    sales = rows["MICROSOFT/SITEA/SITESALES"]
    assert sales["Type"] == "list"
    assert sales["Members"] == "MICROSOFT/SITEA/LBONIFAZ;MICROSOFT/SITEA/SWU;" \
                               "MICROSOFT/SITEA/UKUBLER"
    # Without the dirsyncObject class nobody's hub entry was stamped.
    assert "proxyAddresses" not in hub.attrs(hub.person("swu"))
    change_file = read_csv(Path(results[0].files["changes_csv"]))
    assert [r["Action"] for r in change_file] == ["add"] * 23
    assert list(change_file[0])[:3] == ["Action", "Old Key", "Address"]
    again = sync(config)
    assert changes(again) == 0 and counts(again)["unchanged"] == 23
    assert again[0].mode == "incremental"


def test_a_modify_a_rename_and_a_delete_reach_the_csv_post_office(hub: Hub) -> None:
    config, csv_path = msmail(hub)
    sync(config)
    hub.modify(hub.person("swu"), [(ldap.MOD_REPLACE, "title", [b"Chief Engineer"])])
    # A new primary MS address moves the row to another key: a rename there.
    hub.modify(hub.person("kabercrombie"), [
        (ldap.MOD_ADD, "objectClass", [b"dirsyncObject"]),
        (ldap.MOD_ADD, "proxyAddresses", [b"MS:MICROSOFT/SITEA/KIMA"])])
    hub.delete(hub.person("djump"))
    results = sync(config)
    found = counts(results)
    # Dan Jump was in Site Engineering: the list loses him, a second modify.
    assert (found["modify"], found["rename"], found["delete"]) == (2, 1, 1)
    rows = rows_by(csv_path, "Address")
    assert "DJUMP" not in rows["MICROSOFT/SITEA/SITEENGINE"]["Members"]
    assert "MICROSOFT/SITEA/NVIETZEN" in rows["MICROSOFT/SITEA/SITEENGINE"]["Members"]
    assert rows["MICROSOFT/SITEA/SWU"]["Title"] == "Chief Engineer"
    assert "MICROSOFT/SITEA/KABERCROMB" not in rows
    assert rows["MICROSOFT/SITEA/KIMA"]["Mailbox"] == "KIMA"
    assert rows["MICROSOFT/SITEA/KIMA"]["Display Name"] == "Kim Abercrombie"
    assert "MICROSOFT/SITEA/DJUMP" not in rows
    assert native_rows(csv_path) == NATIVE
    change_file = {(r["Action"], r["Type"]): r
                   for r in read_csv(Path(results[0].files["changes_csv"]))}
    change_file = {a: r for (a, t), r in change_file.items() if t == "user"}
    assert change_file["rename"]["Old Key"] == "MICROSOFT/SITEA/KABERCROMB"
    assert change_file["rename"]["Address"] == "MICROSOFT/SITEA/KIMA"
    assert change_file["delete"]["Address"] == "MICROSOFT/SITEA/DJUMP"
    assert change_file["delete"]["Display Name"] == "Dan Jump"
    assert change_file["modify"]["Title"] == "Chief Engineer"
    assert changes(sync(config)) == 0


def test_rows_the_export_does_not_own_are_never_changed_and_a_taken_key_is_a_conflict(
        hub: Hub) -> None:
    config, csv_path = msmail(hub)
    text = csv_path.read_text(encoding="utf-8")
    # The post office already has a mailbox SWU at SITEA of its own.
    csv_path.write_text(text + "MICROSOFT/SITEA/SWU,user,MICROSOFT,SITEA,SWU,Sue Wu,Sue,Wu,,,,,,\n",
                        encoding="utf-8")
    results = sync(config)
    assert counts(results)["conflict"] == 1 and results[0].status == "errors"
    rows = rows_by(csv_path, "Address")
    assert rows["MICROSOFT/SITEA/SWU"]["Display Name"] == "Sue Wu"
    assert rows["MICROSOFT/SITEA/SWU"]["Sync Source"] == ""
    report = json.loads((results[0].report / "report.json").read_text())  # type: ignore[operator]
    assert any(p["kind"] == "conflict" and "MICROSOFT/SITEA/SWU" in p["message"]
               for p in report["problems"])


def generic_ldap(hub: Hub, **connection: Any) -> tuple[Path, str]:
    """An export of the site into a partner's LDAP directory (a subtree of the same server)."""
    partner = f"ou=Partner,{hub.base}"
    hub.slapd.add_ou(partner)
    container = f"ou=Contoso,{partner}"
    foreign = ldap_directory(hub.slapd, hub.folder, partner)
    config = hub.config(foreign, {"name": "partner", "mapping": "generic-ldap",
                                  "foreign_container": container, **connection})
    return config, container


def test_a_rename_and_a_delete_reach_a_foreign_ldap_directory(hub: Hub) -> None:
    config, container = generic_ldap(hub)
    conn = hub.slapd.connect()
    # An entry of the partner's own where one of ours would go.
    hub.slapd.add_ou(container)
    conn.add_s(f"cn=Dan Jump,{container}", [("objectClass", [b"inetOrgPerson"]),
                                             ("cn", [b"Dan Jump"]), ("sn", [b"Jump"])])
    conn.unbind_s()
    results = sync(config)
    assert counts(results)["add"] == 25 and counts(results)["conflict"] == 1
    found = entries(hub.slapd, container, "(dirsyncSource=partner)")
    assert len(found) == 25
    eva = found[f"cn=Eva Corets,{container}"]
    assert eva["mail"] == ["ecorets@contoso.example"]
    assert eva["dirsyncAnchor"] == hub.attrs(hub.person("ecorets"))["entryUUID"]
    # The two Sam Wus: one has the name, the other its department with it
    # (docs/export.md, Names).
    sams = {dn for dn in found if dn.startswith("cn=Sam Wu")}
    assert sams in ({f"cn=Sam Wu,{container}", f"cn=Sam Wu (HR),{container}"},
                    {f"cn=Sam Wu,{container}", f"cn=Sam Wu (Sales),{container}"})
    sam = hub.attrs(hub.person("swu"))["entryUUID"]
    sam_dn = next(dn for dn, a in found.items() if a["dirsyncAnchor"] == sam)
    sales = found[f"cn=Site Sales,{container}"]
    assert sorted(sales["member"]) == sorted([f"cn=Luis Bonifaz,{container}",
                                              f"cn=Uwe Kübler,{container}", sam_dn])
    dan = entries(hub.slapd, f"cn=Dan Jump,{container}")
    assert "dirsyncSource" not in next(iter(dan.values()))
    uuid = eva["entryUUID"]

    hub.modify(hub.person("ecorets"), [(ldap.MOD_REPLACE, "displayName", [b"Eva Corets-Lang"])])
    hub.delete(hub.person("gshai"))
    results = sync(config)
    found_counts = counts(results)
    assert (found_counts["rename"], found_counts["delete"]) == (1, 1)
    found = entries(hub.slapd, container, "(dirsyncSource=partner)")
    moved = found[f"cn=Eva Corets-Lang,{container}"]
    assert moved["entryUUID"] == uuid                  # a modrdn, not a delete and an add
    assert moved["cn"] == ["Eva Corets-Lang"] and moved["displayName"] == ["Eva Corets-Lang"]
    assert f"cn=Gil Shai,{container}" not in found
    assert hub.slapd.has_entry(f"cn=Dan Jump,{container}")
    ldif = (results[0].report / "changes.ldif").read_text()  # type: ignore[operator]
    assert "changetype: modrdn" in ldif and "changetype: delete" in ldif
    assert changes(sync(config)) == 0


def test_proxy_addresses_generated_unique_and_written_where_allowed(hub: Hub) -> None:
    """NOTES addresses: marked entries are stamped, existing addresses stay, the
    second Sam Wu gets a suffix, an address held elsewhere in the hub is skipped."""
    csv_path = copy_fixture("notes-names.csv", hub.folder)
    conn = hub.slapd.connect()
    for uid in ("swu", "swu2", "kabercrombie"):
        conn.modify_s(hub.person(uid), [(ldap.MOD_ADD, "objectClass", [b"dirsyncObject"])])
    conn.modify_s(hub.person("kabercrombie"), [(ldap.MOD_ADD, "proxyAddresses", [
        b"SMTP:kabercrombie@contoso.example", b"smtp:kim@contoso.example",
        b"notes:Kim A@Exchange"])])
    # Somebody outside the export containers already answers to Dan Jump@Exchange.
    hub.slapd.add_ou(f"ou=Rooms,{hub.base}")
    conn.add_s(f"cn=Jump Room,ou=Rooms,{hub.base}", [
        ("objectClass", [b"inetOrgPerson", b"dirsyncObject"]), ("cn", [b"Jump Room"]),
        ("sn", [b"Room"]), ("proxyAddresses", [b"NOTES:Dan Jump@Exchange"])])
    conn.unbind_s()
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "FullName"},
                        {"name": "notes", "mapping": "notes"})
    results = sync(config)
    assert results[0].status == "ok" and counts(results)["add"] == 26
    assert results[0].message == "3 generated proxy address(es) written to the hub"
    sams = sorted(v for uid in ("swu", "swu2")
                  for v in hub.attrs(hub.person(uid))["proxyAddresses"])
    assert sams == ["NOTES:Sam Wu2@Exchange", "NOTES:Sam Wu@Exchange"]
    kim = hub.attrs(hub.person("kabercrombie"))["proxyAddresses"]
    assert sorted(kim) == ["NOTES:Kim Abercrombie@Exchange", "SMTP:kabercrombie@contoso.example",
                           "notes:Kim A@Exchange", "smtp:kim@contoso.example"]
    # Not marked: not written, but exported with a unique address that is remembered.
    assert "proxyAddresses" not in hub.attrs(hub.person("djump"))
    rows = rows_by(csv_path, "FullName")
    assert rows["Dan Jump2"]["MailDomain"] == "Exchange"
    assert {"Sam Wu", "Sam Wu2", "Kim Abercrombie"} <= set(rows)
    hub_ldif = Path(results[0].files["hub_ldif"]).read_text()
    assert hub_ldif.count("changetype: modify") == 3
    assert changes(sync(config)) == 0

    # proxy_writeback = "all": the remembered address is written, the class added.
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "FullName"},
                        {"name": "notes", "mapping": "notes", "proxy_writeback": "all"})
    results = sync(config)
    assert changes(results) == 0                       # the foreign side sees no difference
    dan = hub.attrs(hub.person("djump"))
    assert dan["proxyAddresses"] == ["NOTES:Dan Jump2@Exchange"]
    assert "dirsyncObject" in dan["objectClass"]
    assert changes(sync(config)) == 0 and sync(config)[0].message is None


def test_no_echo_both_ways_and_a_fixed_point_after_one_more_run(hub: Hub) -> None:
    csv_path = copy_fixture("msmail-po1.csv", hub.folder)
    contacts = f"ou=Contacts,{hub.base}"
    container = f"ou=PO1,{contacts}"
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "Address"}, {
        "mapping": "msmail", "direction": "both", "import_container": container,
        "export_containers": [hub.people, hub.groups, contacts],
        "variables": {"postoffice": "SITEA"}})
    first = sync(config)
    assert [r.direction for r in first] == ["import", "export"]
    assert counts(first, "import")["add"] == 32
    assert counts(first, "export")["add"] == 26        # no PO1 contact goes back to PO1
    # A site group with a PO1 user in it names that user by the post office's own key.
    hub.modify(f"cn=Site Sales,{hub.groups}", [
        (ldap.MOD_ADD, "member", [f"cn=Ted Bremer,{container}".encode()])])
    second = sync(config)
    assert counts(second, "import")["skipped"] == 26   # our own rows, come back
    assert changes(second) == 1 and counts(second, "export")["modify"] == 1
    members = rows_by(csv_path, "Address")["MICROSOFT/SITEA/SITESALES"]["Members"]
    assert members.split(";") == ["MICROSOFT/PO1/TBREMER", "MICROSOFT/SITEA/LBONIFAZ",
                                  "MICROSOFT/SITEA/SWU", "MICROSOFT/SITEA/UKUBLER"]
    third = sync(config)
    assert changes(third) == 0, [r.counts for r in third]
    assert all(r.status == "ok" for r in third)
    imported = entries(hub.slapd, container, "(dirsyncSource=po1)", ["dirsyncAnchor"])
    assert len(imported) == 32
    assert not [a for a in imported.values() if "SITEA" in a["dirsyncAnchor"][0]]


def test_too_many_deletes_stop_the_export_and_change_nothing(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    config, csv_path = msmail(hub, delete_threshold=2)
    sync(config)
    before = csv_path.read_bytes()
    for uid in ("swu", "djump", "gshai"):
        hub.delete(hub.person(uid))
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 3
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["direction"] == "export" and line["status"] == "stopped"
    assert ("this run would delete 3 entries, but delete_threshold = 2 allows at most 2 in "
            "one run; nothing was changed (to let this run delete them, run it again with "
            "--allow-deletes 3, or raise delete_threshold)") in line["message"]
    assert csv_path.read_bytes() == before
    assert main(["-c", str(config), "--json", "sync", "--allow-deletes", "3"]) == 0
    assert len(read_csv(csv_path)) == len(NATIVE) + 23


def test_a_plan_changes_nothing_and_lists_what_a_sync_would_do(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    config, csv_path = msmail(hub)
    before = csv_path.read_bytes()
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "plan"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["dry_run"] and line["counts"]["add"] == 26
    assert csv_path.read_bytes() == before
    planned = read_csv(Path(line["files"]["changes_csv"]))
    assert len(planned) == 26 and planned[0]["Sync Source"] == "po1"
    assert Path(line["files"]["ldif"]).read_text().count("changetype: add") == 26


def test_a_bad_export_mapping_is_named_by_check(hub: Hub,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    mapping = hub.folder / "msmail-site.toml"
    text = (FIXTURES.parent / "mappings" / "msmail.toml").read_text(encoding="utf-8")
    mapping.write_text(text.replace('attributes.Title = "{{ title }}"',
                                    'attributes.Title = "{{ titel }}"'), encoding="utf-8")
    line = next(i for i, s in enumerate(mapping.read_text().splitlines(), 1)
                if "{{ titel }}" in s)
    csv_path = copy_fixture("msmail-po1.csv", hub.folder)
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "Address"},
                        {"mapping": mapping.name})
    capsys.readouterr()
    assert main(["-c", str(config), "check"]) == 2
    out = capsys.readouterr().out
    assert (f"problem  {mapping}:{line}: export.person.attributes.Title: unknown hub "
            "attribute 'titel'") in out

    mapping.write_text(text.replace('attributes.Title = "{{ title }}"',
                                    'attributes.Title = "{{ title }"'), encoding="utf-8")
    assert main(["-c", str(config), "check"]) == 2
    out = capsys.readouterr().out
    assert f"{mapping}:{line}: export.person.attributes.Title: template syntax error" in out

    mapping.write_text(text.replace('[anchor]\nvalue = "{{ Address | upper }}"\n', ""),
                       encoding="utf-8")
    assert main(["-c", str(config), "check"]) == 2
    assert f"{mapping}: anchor: missing" in capsys.readouterr().out

    mapping.write_text(text.split("# -- hub -> post office")[0], encoding="utf-8")
    assert main(["-c", str(config), "check"]) == 2
    assert f"{mapping}: export: missing" in capsys.readouterr().out


def test_an_ldif_hub_is_filtered_by_dirsync_itself(tmp_path: Path) -> None:
    hub_file = tmp_path / "hub.ldif"
    hub_file.write_text(
        "dn: dc=example,dc=org\nobjectClass: domain\ndc: example\n\n"
        + (FIXTURES / "hub-people.ldif").read_text(encoding="utf-8").replace("version: 1\n", ""),
        encoding="utf-8")
    csv_path = copy_fixture("groupwise.csv", tmp_path)
    config = write_config(tmp_path, {
        "hub": {"kind": "ldif", "path": hub_file.name, "base": "dc=example,dc=org"},
        "foreign": {"kind": "csv", "path": csv_path.name, "key": "Address"}},
        [{"name": "gw", "foreign": "foreign", "hub": "hub", "mapping": "groupwise",
          "direction": "export", "export_filter": "(&(objectClass=inetOrgPerson)(ou=Sales))",
          "export_containers": ["ou=People,dc=example,dc=org"]}])
    results = sync(config)
    assert counts(results)["add"] == 3
    rows = rows_by(csv_path, "Address")
    assert {"EXCHANGE.CONNECTOR.swu", "EXCHANGE.CONNECTOR.lbonifaz",
            "EXCHANGE.CONNECTOR.ukubler"} <= set(rows)
    # The file hub has no entryUUID: the anchor is the entry's DN.
    assert rows["EXCHANGE.CONNECTOR.swu"]["Sync Anchor"] == "uid=swu,ou=people,dc=example,dc=org"
    assert changes(sync(config)) == 0


def test_a_foreign_file_with_unreadable_rows_is_not_written_back(hub: Hub) -> None:
    config, csv_path = msmail(hub)
    text = csv_path.read_text(encoding="utf-8")
    csv_path.write_text(text + "MICROSOFT/PO1/BROKEN,user,only four fields\n", encoding="utf-8")
    before = csv_path.read_bytes()
    results = sync(config)
    assert results[0].status == "stopped" and "1 row that cannot be read" in \
        str(results[0].message)
    assert csv_path.read_bytes() == before           # the broken row is still there
    csv_path.write_text(text, encoding="utf-8")
    assert counts(sync(config))["add"] == 26


def status_of(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["-c", str(config), *args, "status"]) == 0
    return capsys.readouterr().out


def test_status_counts_what_an_export_connection_holds(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = msmail(hub)
    results = sync(config)
    exported = counts(results)["add"]
    assert exported > 0 and results[0].status == "ok"
    out = status_of(config, capsys)
    assert f"po1: {exported} entries in the state (export)\n" in out
    lines = [json.loads(line) for line in status_of(config, capsys, "--json").splitlines()]
    assert [(line["direction"], line["entries_in_state"]) for line in lines] == \
        [("export", exported)]
    assert lines[0]["counts"]["add"] == exported          # the record's own fields kept


def test_status_counts_each_direction_of_a_two_way_connection(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = copy_fixture("msmail-po1.csv", hub.folder)
    contacts = f"ou=Contacts,{hub.base}"
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "Address"}, {
        "mapping": "msmail", "direction": "both", "import_container": f"ou=PO1,{contacts}",
        "export_containers": [hub.people, hub.groups, contacts],
        "variables": {"postoffice": "SITEA"}})
    results = sync(config)
    imported, exported = counts(results, "import")["add"], counts(results, "export")["add"]
    assert (imported, exported) == (32, 26)
    out = status_of(config, capsys)
    assert "po1: 58 entries in the state (32 import, 26 export)\n" in out
