"""The import direction against a real slapd: a foreign CSV export into the
hub's import container, through the command line as an administrator runs it."""

from __future__ import annotations

import json
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import (
    anchors,
    context_csn,
    csn_snapshot,
    first,
    gal_row,
    gal_rows,
    hub_config,
    list_row,
    search,
    values,
    write_csv,
)


class World:
    """One test's hub container, foreign CSV and config."""

    def __init__(self, slapd: SlapdServer, base: str, folder: Path, rows: list[dict[str, str]],
                 **config: object) -> None:
        self.slapd = slapd
        self.base = base
        self.container = f"ou=Import,{base}"
        self.folder = folder
        self.csv = write_csv(folder / "gal.csv", rows)
        self.config = hub_config(folder, slapd, self.container, self.csv, **config)  # type: ignore[arg-type]

    def write(self, rows: list[dict[str, str]]) -> None:
        write_csv(self.csv, rows)

    def sync(self, *args: str, capsys: pytest.CaptureFixture[str] | None = None
             ) -> tuple[int, dict[str, object]]:
        if capsys is not None:
            capsys.readouterr()
        status = main(["-c", str(self.config), "--json", "sync", *args])
        line: dict[str, object] = {}
        if capsys is not None:
            out = capsys.readouterr().out.strip().splitlines()
            line = json.loads(out[-1]) if out else {}
        return status, line

    def entries(self, filt: str = "(dirsyncSource=gal)") -> dict[str, dict[str, list[bytes]]]:
        return search(self.slapd, self.container, filt, ["*", "+"])

    def entry(self, rdn: str) -> dict[str, list[bytes]]:
        found = search(self.slapd, f"{rdn},{self.container}", attrs=["*", "+"],
                       scope=ldap.SCOPE_BASE)
        assert found, f"{rdn} is not in the hub"
        return next(iter(found.values()))

    def add(self, rdn: str, attrs: dict[str, list[bytes]]) -> None:
        conn = self.slapd.connect()
        try:
            conn.add_s(f"{rdn},{self.container}", list(attrs.items()))
        finally:
            conn.unbind_s()

    def modify(self, rdn: str, mods: list[tuple[int, str, list[bytes] | None]]) -> None:
        conn = self.slapd.connect()
        try:
            conn.modify_s(f"{rdn},{self.container}", mods)
        finally:
            conn.unbind_s()


@pytest.fixture
def world(slapd: SlapdServer, base: str, tmp_path: Path) -> World:
    rows = gal_rows(8) + [gal_row("tbremer", **{"Display Name": "Ted Bremer",
                                                "Title": "Account Manager"})]
    return World(slapd, base, tmp_path, rows)


def counts(line: dict[str, object]) -> dict[str, int]:
    return line["counts"]  # type: ignore[return-value]


def test_first_sync_creates_every_entry_with_its_marker_and_anchor(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    status, line = world.sync(capsys=capsys)
    assert status == 0
    assert line["status"] == "ok" and line["mode"] == "full" and line["dry_run"] is False
    assert counts(line) == {"add": 9, "modify": 0, "rename": 0, "delete": 0, "unchanged": 0,
                            "skipped": 0, "conflict": 0, "error": 0, "unknown": 0,
                            "not_attempted": 0}
    assert Path(str(line["report"])).is_dir()
    ted = world.entry("cn=Ted Bremer")
    assert values(ted, "objectClass") == ["inetOrgPerson", "dirsyncObject"]
    assert first(ted, "dirsyncAnchor") == "tbremer"
    assert first(ted, "dirsyncSource") == "gal"
    assert first(ted, "title") == "Account Manager"
    assert first(ted, "mail") == "tbremer@po1.example"
    assert first(ted, "targetAddress") == "SMTP:tbremer@po1.example"
    assert values(ted, "proxyAddresses") == ["SMTP:tbremer@po1.example"]
    assert first(ted, "uid") is None  # a contact has no login name
    found = anchors(world.slapd, world.container)
    assert len(found) == 9 and all(len(dns) == 1 for dns in found.values())


def test_a_resync_with_no_change_writes_nothing(world: World,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    world.sync()
    before = csn_snapshot(world.slapd, world.base)
    database = context_csn(world.slapd)
    status, line = world.sync(capsys=capsys)
    assert status == 0 and line["mode"] == "incremental"
    assert counts(line)["unchanged"] == 9
    assert sum(counts(line)[k] for k in ("add", "modify", "rename", "delete")) == 0
    # The server's own view: no entry and no part of the database was written.
    assert csn_snapshot(world.slapd, world.base) == before
    assert context_csn(world.slapd) == database
    # A full run compares every entry with the hub, and writes nothing either.
    status, line = world.sync("--full", capsys=capsys)
    assert status == 0 and line["mode"] == "full" and counts(line)["unchanged"] == 9
    assert csn_snapshot(world.slapd, world.base) == before


def test_an_attribute_change_is_one_modify_of_that_entry(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.sync()
    before = csn_snapshot(world.slapd, world.base)
    rows = gal_rows(8) + [gal_row("tbremer", **{"Display Name": "Ted Bremer",
                                                "Title": "Sales Director", "Mobile": "+1 555"})]
    world.write(rows)
    status, line = world.sync(capsys=capsys)
    assert status == 0 and counts(line)["modify"] == 1 and counts(line)["unchanged"] == 8
    ted = world.entry("cn=Ted Bremer")
    assert first(ted, "title") == "Sales Director" and first(ted, "mobile") == "+1 555"
    after = csn_snapshot(world.slapd, world.base)
    changed = [dn for dn in after if after[dn] != before.get(dn)]
    assert changed == [f"cn=ted bremer,{world.container}".lower()]
    # A value that goes away in the source goes away in the hub.
    world.write(gal_rows(8) + [gal_row("tbremer", **{"Display Name": "Ted Bremer"})])
    world.sync()
    assert first(world.entry("cn=Ted Bremer"), "mobile") is None


def test_a_new_name_is_a_modrdn_not_a_delete_and_add(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.sync()
    uuid = first(world.entry("cn=Ted Bremer"), "entryUUID")
    world.write(gal_rows(8) + [gal_row("tbremer", **{"Display Name": "Theodore Bremer",
                                                     "Title": "Account Manager"})])
    status, line = world.sync(capsys=capsys)
    assert status == 0 and counts(line)["rename"] == 1 and counts(line)["add"] == 0
    moved = world.entry("cn=Theodore Bremer")
    assert first(moved, "entryUUID") == uuid
    assert values(moved, "cn") == ["Theodore Bremer"]
    assert first(moved, "displayName") == "Theodore Bremer"
    with pytest.raises(AssertionError):
        world.entry("cn=Ted Bremer")


def test_names_that_swap_are_renamed_through_a_temporary_name(
        slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    rows = [gal_row("a1", **{"Display Name": "Alpha"}), gal_row("b2", **{"Display Name": "Beta"})]
    world = World(slapd, base, tmp_path, rows)
    world.sync()
    uuids = {n: first(world.entry(f"cn={n}"), "entryUUID") for n in ("Alpha", "Beta")}
    world.write([gal_row("a1", **{"Display Name": "Beta"}),
                 gal_row("b2", **{"Display Name": "Alpha"})])
    assert world.sync()[0] == 0
    assert first(world.entry("cn=Beta"), "dirsyncAnchor") == "a1"
    assert first(world.entry("cn=Alpha"), "dirsyncAnchor") == "b2"
    assert first(world.entry("cn=Beta"), "entryUUID") == uuids["Alpha"]
    assert set(anchors(slapd, world.container)) == {"a1", "b2"}


def test_an_entry_gone_from_the_source_is_deleted(world: World,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    world.sync()
    world.write(gal_rows(8))
    status, line = world.sync(capsys=capsys)
    assert status == 0 and counts(line)["delete"] == 1
    assert "tbremer" not in anchors(world.slapd, world.container)
    assert len(anchors(world.slapd, world.container)) == 8


def test_an_administrators_own_attribute_stays(world: World) -> None:
    world.sync()
    world.modify("cn=Ted Bremer", [(ldap.MOD_ADD, "description", [b"VIP, call first"]),
                                   (ldap.MOD_ADD, "seeAlso", [b"cn=Sales,dc=example,dc=org"])])
    world.write(gal_rows(8) + [gal_row("tbremer", **{"Display Name": "Ted Bremer",
                                                     "Title": "Sales Director"})])
    assert world.sync()[0] == 0
    assert world.sync("--full")[0] == 0
    ted = world.entry("cn=Ted Bremer")
    assert first(ted, "title") == "Sales Director"
    assert first(ted, "description") == "VIP, call first"
    assert first(ted, "seeAlso") == "cn=Sales,dc=example,dc=org"


def test_an_owned_attribute_changed_by_hand_is_put_back_by_a_full_run(world: World) -> None:
    world.sync()
    world.modify("cn=Ted Bremer", [(ldap.MOD_REPLACE, "title", [b"Changed by hand"])])
    world.sync("--full")
    assert first(world.entry("cn=Ted Bremer"), "title") == "Account Manager"


def test_an_entry_dirsync_does_not_own_is_never_touched(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.sync()
    world.add("cn=Hand Made", {"objectClass": [b"inetOrgPerson"], "cn": [b"Hand Made"],
                               "sn": [b"Made"], "mail": [b"hand@example.org"]})
    # Even one carrying the anchor of a source entry, under another connection's marker.
    world.add("cn=Other Connection", {
        "objectClass": [b"inetOrgPerson", b"dirsyncObject"], "cn": [b"Other Connection"],
        "sn": [b"Other"], "dirsyncSource": [b"someone-else"], "dirsyncAnchor": [b"u000001"]})
    before = {dn: csn for dn, csn in csn_snapshot(world.slapd, world.container).items()
              if dn.startswith(("cn=hand made", "cn=other connection"))}
    world.write([gal_row("u000001")])   # everything else is gone from the source
    status, line = world.sync("--allow-deletes", "8", capsys=capsys)
    assert status == 0 and counts(line)["delete"] == 8
    after = csn_snapshot(world.slapd, world.container)
    assert {dn: after[dn] for dn in before} == before


def test_a_dn_taken_by_an_unowned_entry_is_a_conflict(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    conn = world.slapd.connect()
    conn.add_s(world.container, [("objectClass", [b"organizationalUnit"]), ("ou", [b"Import"])])
    conn.unbind_s()
    world.add("cn=Ted Bremer", {"objectClass": [b"inetOrgPerson"], "cn": [b"Ted Bremer"],
                                "sn": [b"Bremer"], "title": [b"The real one"]})
    csn = csn_snapshot(world.slapd, world.container)[f"cn=ted bremer,{world.container}".lower()]
    status, line = world.sync(capsys=capsys)
    assert status == 1 and line["status"] == "errors"
    assert counts(line)["conflict"] == 1 and counts(line)["add"] == 8
    ted = world.entry("cn=Ted Bremer")
    assert first(ted, "title") == "The real one" and first(ted, "dirsyncSource") is None
    assert csn_snapshot(world.slapd, world.container)[
        f"cn=ted bremer,{world.container}".lower()] == csn
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    conflicts = [p for p in report["problems"] if p["kind"] == "conflict"]
    assert conflicts[0]["anchor"] == "tbremer"
    assert "does not own" in conflicts[0]["message"]


def test_two_source_entries_with_one_name_get_distinct_dns(
        slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    rows = [gal_row("js1", **{"Display Name": "John Smith"}),
            gal_row("js2", **{"Display Name": "John Smith"})]
    world = World(slapd, base, tmp_path, rows)
    assert world.sync()[0] == 0
    assert first(world.entry("cn=John Smith"), "dirsyncAnchor") == "js1"
    assert first(world.entry("cn=John Smith (js2)"), "dirsyncAnchor") == "js2"
    # Stable: the next runs keep the names they have.
    before = csn_snapshot(slapd, world.container)
    assert world.sync("--full")[0] == 0
    assert csn_snapshot(slapd, world.container) == before


def _list_world(slapd: SlapdServer, base: str, folder: Path, lists: str) -> World:
    rows = gal_rows(4) + [list_row("dl1", ["u000001", "u000002", "nobody"]),
                          list_row("dl2", [])]
    return World(slapd, base, folder, rows, lists=lists)


def test_lists_as_contacts_point_at_the_foreign_list(
        slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    world = _list_world(slapd, base, tmp_path, "contact")
    assert world.sync()[0] == 0
    dl1 = world.entry("cn=List dl1")
    assert "groupOfNames" not in values(dl1, "objectClass")
    assert first(dl1, "targetAddress") == "SMTP:dl1@po1.example"
    assert values(dl1, "member") == []


def test_lists_as_groups_hold_the_hub_dns_of_their_members(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = _list_world(slapd, base, tmp_path, "group")
    status, line = world.sync(capsys=capsys)
    assert status == 0
    dl1 = world.entry("cn=List dl1")
    assert "groupOfNames" in values(dl1, "objectClass")
    assert first(dl1, "targetAddress") is None   # the hub expands a group itself
    assert sorted(values(dl1, "member")) == [f"cn=User u000001,{world.container}",
                                             f"cn=User u000002,{world.container}"]
    # The unknown member is reported, not invented.
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    notes = next(e for e in report["entries"] if e.get("anchor") == "dl1")["notes"]
    assert "nobody" in notes[0]
    # An empty list still satisfies groupOfNames: it names itself.
    assert values(world.entry("cn=List dl2"), "member") == [f"cn=List dl2,{world.container}"]
    # Membership follows a renamed member and a new one.
    world.write(gal_rows(3) + [gal_row("u000003", **{"Display Name": "Renamed Three"}),
                               list_row("dl1", ["u000001", "u000003"]), list_row("dl2", [])])
    assert world.sync()[0] == 0
    assert sorted(values(world.entry("cn=List dl1"), "member")) == [
        f"cn=Renamed Three,{world.container}", f"cn=User u000001,{world.container}"]
    before = csn_snapshot(slapd, world.container)
    assert world.sync()[0] == 0
    assert csn_snapshot(slapd, world.container) == before


def test_lists_skipped_are_not_synced_and_go_when_switched_to_skip(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = _list_world(slapd, base, tmp_path, "contact")
    world.sync()
    assert {"dl1", "dl2"} <= set(anchors(slapd, world.container))
    text = world.config.read_text().replace('lists = "contact"', 'lists = "skip"')
    world.config.write_text(text)
    status, line = world.sync(capsys=capsys)
    assert status == 0 and counts(line)["skipped"] == 2 and counts(line)["delete"] == 2
    assert set(anchors(slapd, world.container)) == {f"u{i:06d}" for i in range(4)}


def test_a_list_switched_from_contact_to_group_changes_its_structural_class(
        slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    world = _list_world(slapd, base, tmp_path, "contact")
    world.sync()
    world.config.write_text(world.config.read_text().replace('lists = "contact"',
                                                             'lists = "group"'))
    assert world.sync()[0] == 0
    assert "groupOfNames" in values(world.entry("cn=List dl1"), "objectClass")
    assert len(anchors(slapd, world.container)["dl1"]) == 1


def _bind(slapd: SlapdServer, dn: str, password: str) -> bool:
    conn = ldap.initialize(slapd.url)
    try:
        conn.simple_bind_s(dn, password)
        return True
    except ldap.INVALID_CREDENTIALS:
        return False
    finally:
        conn.unbind_s()


@pytest.mark.parametrize("recipients", ["contact", "disabled-user", "enabled-user"])
def test_recipient_types(slapd: SlapdServer, base: str, tmp_path: Path, recipients: str) -> None:
    world = World(slapd, base, tmp_path, [gal_row("tbremer", **{"Display Name": "Ted Bremer"})],
                  recipients=recipients)
    assert world.sync()[0] == 0
    dn = f"cn=Ted Bremer,{world.container}"
    ted = world.entry("cn=Ted Bremer")
    assert first(ted, "targetAddress") == "SMTP:tbremer@po1.example"
    if recipients == "contact":
        assert first(ted, "uid") is None
        return
    assert first(ted, "uid") == "tbremer"
    # An administrator gives the account a password.
    world.modify("cn=Ted Bremer", [(ldap.MOD_REPLACE, "userPassword", [b"s3cret"])])
    assert _bind(slapd, dn, "s3cret")
    assert world.sync("--full")[0] == 0
    if recipients == "disabled-user":
        # A disabled user stays one: the password goes, nobody can bind.
        assert values(world.entry("cn=Ted Bremer"), "userPassword") == []
        assert not _bind(slapd, dn, "s3cret")
    else:
        assert _bind(slapd, dn, "s3cret")


def test_more_deletes_than_the_threshold_stop_the_run(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = World(slapd, base, tmp_path, gal_rows(10), threshold=2)
    world.sync()
    before = csn_snapshot(slapd, world.base)
    world.write(gal_rows(7))
    status, line = world.sync(capsys=capsys)
    assert status == 3 and line["status"] == "stopped"
    assert counts(line)["delete"] == 3
    assert "threshold" in str(line["message"])
    assert csn_snapshot(slapd, world.base) == before
    # The report of the stopped run says what would have been deleted.
    ldif = (Path(str(line["report"])) / "changes.ldif").read_text()
    assert ldif.count("changetype: delete") == 3
    # ... and that none of it was done.
    text = (Path(str(line["report"])) / "report.txt").read_text()
    assert "Changes not applied: the run stopped" in text
    assert text.count("** not applied") == 3
    page = (Path(str(line["report"])) / "report.html").read_text()
    assert page.count('<span class="failed">not applied</span>') == 3
    # A percentage works the same way: 3 of 10 is over 20%.
    world.config.write_text(world.config.read_text().replace("delete_threshold = 2",
                                                             'delete_threshold = "20%"'))
    assert world.sync()[0] == 3
    assert world.sync("--allow-deletes", "2")[0] == 3
    assert csn_snapshot(slapd, world.base) == before
    status, line = world.sync("--allow-deletes", "3", capsys=capsys)
    assert status == 0 and counts(line)["delete"] == 3
    assert len(anchors(slapd, world.container)) == 7


def test_an_empty_source_stops_the_run(slapd: SlapdServer, base: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    world = World(slapd, base, tmp_path, gal_rows(3))
    world.sync()
    before = csn_snapshot(slapd, world.base)
    world.write([])
    status, line = world.sync(capsys=capsys)
    assert status == 3 and "empty" in str(line["message"])
    assert csn_snapshot(slapd, world.base) == before
    # A file that is not there at all stops the run too (exit 2: bad input).
    world.csv.unlink()
    assert main(["-c", str(world.config), "sync"]) == 2
    assert csn_snapshot(slapd, world.base) == before


def test_a_bad_row_is_reported_and_the_rest_applied(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = World(slapd, base, tmp_path, gal_rows(5))
    world.sync()
    lines = world.csv.read_text().splitlines()
    lines.insert(3, "broken,row,with,too,few,fields")
    lines.append("u000099,user,User u000099,New,Person,u99@po1.example,,,,,,,")
    world.csv.write_text("\n".join(lines) + "\n")
    # The entry whose row is gone stays: it may be the one that could not be read.
    world.csv.write_text(world.csv.read_text().replace(
        "u000004,user,User u000004", "u000004,user,User u000004,extra"))
    status, line = world.sync(capsys=capsys)
    assert status == 1 and line["status"] == "errors"
    assert counts(line)["error"] == 2 and counts(line)["add"] == 1
    assert counts(line)["delete"] == 0
    present = anchors(slapd, world.container)
    assert "u000099" in present and "u000004" in present
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    errors = sorted(p["line"] for p in report["problems"] if p["kind"] == "error")
    assert errors == [4, 7]   # the header is line 1


def test_a_malformed_config_lists_every_problem(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dirsync.toml"
    config.write_text("""
stat = "var/state.sqlite"

[directories.hub]
kind = "ldap"
url = "http://nowhere"
password = "secret"

[directories.po1]
kind = "csv"
path = "missing.csv"
url = "ldap://x"

[[connections]]
name = "bad name!"
foreign = "po9"
hub = "hub"
mapping = "no-such-mapping"
recipients = "robot"
lists = "maybe"
delete_threshold = "lots"
schedule = "every now and then"
""")
    problems = [
        "stat: unknown key",
        "directories.hub.url:",
        "directories.hub.password: secrets never go in the config file",
        "directories.po1.path: no such file",
        "directories.po1.url: does not apply to a csv directory",
        "connections[0].name:",
        "connections[0].foreign: no directory named 'po9'",
        "connections[0].mapping:",
        "connections[0].recipients:",
        "connections[0].lists:",
        "connections[0].delete_threshold:",
        "connections[0].schedule:",
        "connections[0].import_container: missing",
    ]
    for command in (["check"], ["sync"], ["plan"]):
        capsys.readouterr()
        assert main(["-c", str(config), *command]) == 2
        captured = capsys.readouterr()
        output = captured.out + captured.err
        for problem in problems:
            assert problem in output, (command, problem)


def test_a_file_that_is_not_csv_halfway_changes_nothing(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A first sync adds entries as it reads; a broken file must still change nothing."""
    world = World(slapd, base, tmp_path, gal_rows(300))
    with open(world.csv, "ab") as stream:
        stream.write(b'u999999,user,"an unterminated quote\n')
    capsys.readouterr()
    assert main(["-c", str(world.config), "sync"]) == 2
    err = capsys.readouterr().err
    assert "gal.csv:" in err and "not valid CSV" in err
    assert search(slapd, base, "(dirsyncSource=gal)") == {}
    world.csv.write_bytes(world.csv.read_bytes().replace(b"User u000150", b"User \xff150"))
    assert main(["-c", str(world.config), "sync"]) == 2
    assert search(slapd, base, "(dirsyncSource=gal)") == {}
