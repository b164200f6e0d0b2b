"""Change detection for the export direction, against a real slapd hub with syncprov:
an add, a modify, a rename and a delete in the hub seen incrementally by an
export to a foreign CSV file and to a foreign LDAP directory, the same end
state as a full run, a refused cookie, the timestamp fallback, a hub file,
and no echo both ways."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.entry import normalize_dn
from dirsync.state.store import StateStore
from dirsync.sync.changestate import COOKIE
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.twoway import (
    FIXTURES,
    copy_fixture,
    entries,
    ldap_directory,
    load_ldif,
    read_csv,
    write_config,
)

PEOPLE = 24        # people in the fixture's ou=People


def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``dirsync --json sync``: the export's result line, with the exit status."""
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "sync", *args])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    line: dict[str, Any] = next(r for r in reversed(lines) if r.get("direction") == "export")
    line["exit"] = status
    line["all"] = lines
    return line


def kinds(line: dict[str, Any]) -> tuple[int, int, int, int]:
    counts = line["counts"]
    return counts["add"], counts["modify"], counts["rename"], counts["delete"]


class Hub:
    """The fixture's people below a test's own base of a slapd hub."""

    def __init__(self, slapd: SlapdServer, base: str, folder: Path) -> None:
        self.slapd, self.base, self.folder = slapd, base, folder
        load_ldif(slapd, FIXTURES / "hub-people.ldif", base)

    @property
    def people(self) -> str:
        return f"ou=People,{self.base}"

    def person(self, uid: str) -> str:
        return f"uid={uid},{self.people}"

    def config(self, foreign: dict[str, Any], **connection: Any) -> Path:
        table = {"name": "po1", "foreign": "foreign", "hub": "hub", "direction": "export",
                 "export_containers": [self.people], **connection}
        hub = ldap_directory(self.slapd, self.folder, self.base)
        return write_config(self.folder, {"hub": hub, "foreign": foreign}, [table])

    def change_everything(self) -> None:
        """An add, a modify, a rename and a delete in the export container."""
        conn = self.slapd.connect()
        try:
            conn.add_s(self.person("nnew"), [
                ("objectClass", [b"inetOrgPerson"]), ("uid", [b"nnew"]),
                ("cn", [b"Nia New"]), ("sn", [b"New"]), ("givenName", [b"Nia"]),
                ("displayName", [b"Nia New"]), ("mail", [b"nnew@contoso.example"])])
            conn.modify_s(self.person("swu"), [(ldap.MOD_REPLACE, "title",
                                                [b"Chief Engineer"])])
            conn.modify_s(self.person("ecorets"), [(ldap.MOD_REPLACE, "displayName",
                                                    [b"Eva Corets-Lang"])])
            conn.delete_s(self.person("gshai"))
        finally:
            conn.unbind_s()


@pytest.fixture
def hub(slapd: SlapdServer, base: str, tmp_path: Path) -> Hub:
    return Hub(slapd, base, tmp_path)


def msmail(hub: Hub, **connection: Any) -> tuple[Path, Path]:
    csv_path = copy_fixture("msmail-po1.csv", hub.folder)
    config = hub.config({"kind": "csv", "path": csv_path.name, "key": "Address"},
                        mapping="msmail", variables={"postoffice": "SITEA"}, **connection)
    return config, csv_path


def partner(hub: Hub) -> tuple[Path, str]:
    """An export into a partner's LDAP directory (a subtree of the same server)."""
    folder = f"ou=Partner,{hub.base}"
    hub.slapd.add_ou(folder)
    container = f"ou=Contoso,{folder}"
    config = hub.config(ldap_directory(hub.slapd, hub.folder, folder), name="partner",
                        mapping="generic-ldap", foreign_container=container)
    return config, container


def foreign_view(slapd: SlapdServer, container: str) -> dict[str, dict[str, list[str]]]:
    """The exported entries without what every write changes."""
    found = entries(slapd, container, "(dirsyncSource=*)", attrs=["*"])
    return {normalize_dn(dn): {k.lower(): sorted(v) for k, v in a.items()}
            for dn, a in found.items()}


def test_csv_export_sees_an_add_a_modify_a_rename_and_a_delete_and_full_agrees(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    config, csv_path = msmail(hub)
    first = sync(config, capsys)
    assert first["mode"] == "full" and first["counts"]["add"] == PEOPLE
    again = sync(config, capsys)
    assert again["mode"] == "incremental" and kinds(again) == (0, 0, 0, 0)
    assert again["counts"]["unchanged"] == PEOPLE
    hub.change_everything()
    # A new primary MS address moves a row to another key: a rename there.
    conn = hub.slapd.connect()
    conn.modify_s(hub.person("kabercrombie"), [
        (ldap.MOD_ADD, "objectClass", [b"dirsyncObject"]),
        (ldap.MOD_ADD, "proxyAddresses", [b"MS:MICROSOFT/SITEA/KIMA"])])
    conn.unbind_s()
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["exit"] == 0, line
    # Eva's new display name is a modify of her row (the key is her mailbox).
    assert kinds(line) == (1, 2, 1, 1)
    assert line["counts"]["unchanged"] == PEOPLE - 4
    rows = {r["Address"]: r for r in read_csv(csv_path)}
    assert rows["MICROSOFT/SITEA/SWU"]["Title"] == "Chief Engineer"
    assert rows["MICROSOFT/SITEA/NNEW"]["Display Name"] == "Nia New"
    assert "MICROSOFT/SITEA/KIMA" in rows and "MICROSOFT/SITEA/KABERCROMB" not in rows
    assert "MICROSOFT/SITEA/GSHAI" not in rows
    incremental = csv_path.read_bytes()
    full = sync(config, capsys, "--full")
    assert full["mode"] == "full" and kinds(full) == (0, 0, 0, 0)
    assert full["counts"]["unchanged"] == PEOPLE
    assert csv_path.read_bytes() == incremental
    assert sync(config, capsys)["mode"] == "incremental"


def test_ldap_export_sees_the_changes_and_fetches_only_what_it_changes(
        hub: Hub, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    config, container = partner(hub)
    assert sync(config, capsys)["counts"]["add"] == PEOPLE
    hub.change_everything()
    with caplog.at_level(logging.INFO, logger="dirsync.changes"):
        line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["exit"] == 0, line
    assert kinds(line) == (1, 1, 1, 1)
    found = foreign_view(hub.slapd, container)
    assert f"cn=eva corets-lang,{normalize_dn(container)}" in found
    assert f"cn=gil shai,{normalize_dn(container)}" not in found
    assert found[f"cn=nia new,{normalize_dn(container)}"]["mail"] == ["nnew@contoso.example"]
    assert found[f"cn=sam wu,{normalize_dn(container)}"]["title"] == ["Chief Engineer"]
    # One event per applied change, with the export direction in it.
    events = [r.fields for r in caplog.records  # type: ignore[attr-defined]
              if r.name == "dirsync.changes"]
    # The rename is a modrdn, then a modify of the display name that moved it.
    assert sorted(e["action"] for e in events) == ["add", "delete", "modify", "modify",
                                                   "modrdn"]
    assert {(e["connection"], e["direction"], e["result"]) for e in events} == \
        {("partner", "export", "applied")}
    incremental = foreign_view(hub.slapd, container)
    full = sync(config, capsys, "--full")
    assert full["mode"] == "full" and kinds(full) == (0, 0, 0, 0)
    assert foreign_view(hub.slapd, container) == incremental


def test_a_refused_cookie_leads_to_a_full_run(
        hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    config, _ = partner(hub)
    sync(config, capsys)
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        name = f"{COOKIE} {normalize_dn(hub.people)}"
        assert state.cursor("partner", "export", name)
        # A cookie from the future: "consumer state is newer than provider".
        state.set_cursor("partner", "export", name,
                         "rid=000,csn=29991231235959.999999Z#000000#000#000000")
    conn = hub.slapd.connect()
    conn.delete_s(hub.person("gshai"))
    conn.unbind_s()
    with caplog.at_level(logging.INFO, logger="dirsync.export"):
        line = sync(config, capsys)
    assert line["mode"] == "full" and kinds(line) == (0, 0, 0, 1)
    assert "cannot serve the stored cookie" in caplog.text
    assert sync(config, capsys)["mode"] == "incremental"


def test_the_timestamp_fallback_on_a_hub_without_syncprov(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = SlapdServer(dbnosync=True)
    server.start()
    try:
        server.add_suffix()
        hub = Hub(server, server.suffix, tmp_path)
        config, container = partner(hub)
        assert sync(config, capsys)["mode"] == "full"
        hub.change_everything()
        line = sync(config, capsys)
        assert line["mode"] == "incremental" and kinds(line) == (1, 1, 1, 1), line
        incremental = foreign_view(server, container)
        full = sync(config, capsys, "--full")
        assert kinds(full) == (0, 0, 0, 0) and foreign_view(server, container) == incremental
    finally:
        server.destroy()


def test_an_unchanged_hub_file_exports_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub_file = copy_fixture("hub-people.ldif", tmp_path)
    csv_path = copy_fixture("msmail-po1.csv", tmp_path)
    config = write_config(tmp_path, {
        "hub": {"kind": "ldif", "path": hub_file.name, "base": "dc=example,dc=org"},
        "foreign": {"kind": "csv", "path": csv_path.name, "key": "Address"}}, [{
            "name": "po1", "foreign": "foreign", "hub": "hub", "direction": "export",
            "export_containers": ["ou=People,dc=example,dc=org"], "mapping": "msmail",
            "variables": {"postoffice": "SITEA"}}])
    assert sync(config, capsys)["counts"]["add"] == PEOPLE
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["message"] == "hub unchanged"
    assert line["counts"]["unchanged"] == PEOPLE
    text = hub_file.read_text(encoding="utf-8")
    hub_file.write_text(text.replace("title: ", "title: Senior ", 1), encoding="utf-8")
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and kinds(line) == (0, 1, 0, 0)
    assert sync(config, capsys)["message"] == "hub unchanged"


def test_no_echo_both_ways_with_incremental_runs(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    """PO1's recipients imported below the export container are never exported back."""
    config, csv_path = msmail(hub, direction="both",
                              import_container=f"ou=PO1,{hub.people}")
    first = sync(config, capsys)
    imported = next(r for r in first["all"] if r.get("direction") == "import")
    assert imported["counts"]["add"] > 0 and first["counts"]["add"] == PEOPLE
    second = sync(config, capsys)
    for line in second["all"]:
        if "direction" in line:
            assert kinds(line) == (0, 0, 0, 0), line
    assert second["mode"] == "incremental"
    conn = hub.slapd.connect()
    conn.modify_s(hub.person("swu"), [(ldap.MOD_REPLACE, "title", [b"Chief Engineer"])])
    conn.unbind_s()
    third = sync(config, capsys)
    assert third["mode"] == "incremental" and kinds(third) == (0, 1, 0, 0)
    fourth = sync(config, capsys)
    assert all(kinds(line) == (0, 0, 0, 0) for line in fourth["all"] if "direction" in line)
    exported = [r for r in read_csv(csv_path) if r.get("Sync Source") == "po1"]
    assert len(exported) == PEOPLE


def two_containers_to_a_partner(server: SlapdServer,
                                tmp_path: Path) -> tuple[Hub, str, str, Path]:
    """The fixture's people and an ou=Staff of a fresh server, exported into
    a partner's subtree of the same server: (hub, staff, partner container, config)."""
    server.add_suffix()
    hub = Hub(server, server.suffix, tmp_path)
    staff = f"ou=Staff,{hub.base}"
    server.add_ou(staff)
    folder = f"ou=Partner,{hub.base}"
    server.add_ou(folder)
    container = f"ou=Contoso,{folder}"
    config = hub.config(ldap_directory(server, tmp_path, folder), name="partner",
                        mapping="generic-ldap", foreign_container=container,
                        export_containers=[hub.people, staff])
    return hub, staff, container, config


@pytest.mark.parametrize("sessionlog", [100, None], ids=["sessionlog", "present-phase"])
def test_two_containers_deletes_both_ways_a_move_between_them_and_a_restart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], sessionlog: int | None) -> None:
    server = SlapdServer(syncprov=True, sessionlog=sessionlog, dbnosync=True)
    server.start()
    try:
        hub, staff, container, config = two_containers_to_a_partner(server, tmp_path)
        assert sync(config, capsys)["counts"]["add"] == PEOPLE
        conn = server.connect()
        # Leaving one export container for another is not a delete.
        conn.rename_s(hub.person("swu"), "uid=swu", staff)
        conn.delete_s(hub.person("gshai"))
        line = sync(config, capsys)
        assert line["mode"] == "incremental" and kinds(line) == (0, 0, 0, 1), line
        found = foreign_view(server, container)
        assert f"cn=sam wu,{normalize_dn(container)}" in found
        assert f"cn=gil shai,{normalize_dn(container)}" not in found
        conn.unbind_s()
        # slapd 2.5 answers with a present phase after a restart, session log or not.
        server.restart()
        conn = server.connect()
        conn.delete_s(f"uid=swu,{staff}")
        conn.delete_s(hub.person("djump"))
        conn.unbind_s()
        line = sync(config, capsys)
        assert line["mode"] == "incremental" and kinds(line) == (0, 0, 0, 2), line
        incremental = foreign_view(server, container)
        assert len(incremental) == PEOPLE - 3
        full = sync(config, capsys, "--full")
        assert kinds(full) == (0, 0, 0, 0) and foreign_view(server, container) == incremental
    finally:
        server.destroy()


def test_a_dry_run_and_a_safety_stop_leave_the_cursor_where_it_was(
        hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, container = partner(hub)
    sync(config, capsys)
    name = f"{COOKIE} {normalize_dn(hub.people)}"
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        cookie = state.cursor("partner", "export", name)
    conn = hub.slapd.connect()
    for uid in ("gshai", "djump", "ecorets"):
        conn.delete_s(hub.person(uid))
    conn.unbind_s()
    assert kinds(sync(config, capsys, "--dry-run")) == (0, 0, 0, 3)
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        assert state.cursor("partner", "export", name) == cookie
    # More deletes than a threshold of 2: stopped, nothing changed, nothing moved.
    text = config.read_text()
    config.write_text(text.replace('name = "partner"', 'name = "partner"\ndelete_threshold = 2'))
    stopped = sync(config, capsys)
    assert stopped["exit"] == 3 and len(foreign_view(hub.slapd, container)) == PEOPLE
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        assert state.cursor("partner", "export", name) == cookie
    config.write_text(text)
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and kinds(line) == (0, 0, 0, 3)
    assert len(foreign_view(hub.slapd, container)) == PEOPLE - 3


def hub_uuid(hub: Hub, uid: str) -> str:
    return next(iter(entries(hub.slapd, hub.person(uid)).values()))["entryUUID"][0]


@pytest.mark.parametrize("foreign", ["ldap", "csv"])
def test_an_add_whose_state_row_was_lost_is_found_again(
        hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], foreign: str) -> None:
    """As if a run was killed between the foreign add and its state row."""
    if foreign == "ldap":
        config, container = partner(hub)
        name = "partner"
    else:
        config, csv_path = msmail(hub)
        name = "po1"
    sync(config, capsys)
    cursor = f"{COOKIE} {normalize_dn(hub.people)}"
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        cookie = state.cursor(name, "export", cursor)
    hub.change_everything()
    assert kinds(sync(config, capsys))[0] == 1
    uuid = hub_uuid(hub, "nnew")
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        assert cookie is not None
        state.set_cursor(name, "export", cursor, cookie)
        state.drop(name, "export", uuid)
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["exit"] == 0, line
    assert kinds(line) == (0, 0, 0, 0)
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        assert uuid in state.entries(name, "export")
    if foreign == "ldap":
        assert len(foreign_view(hub.slapd, container)) == PEOPLE
    else:
        assert sum(r["Sync Source"] == "po1" for r in read_csv(csv_path)) == PEOPLE


def test_full_every_and_a_changed_mapping_bring_a_full_run(
        hub: Hub, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    config, csv_path = msmail(hub, full_every="1s")

    def settings(**connection: Any) -> Path:
        return hub.config({"kind": "csv", "path": csv_path.name, "key": "Address"},
                          mapping="msmail", variables={"postoffice": "SITEA"}, **connection)

    assert sync(config, capsys)["mode"] == "full"
    time.sleep(1.1)
    with caplog.at_level(logging.INFO, logger="dirsync.export"):
        assert sync(config, capsys)["mode"] == "full"
    assert "full_every" in caplog.text
    assert sync(settings(), capsys)["mode"] == "incremental"
    # Another export filter: the three people in HR leave the export.
    line = sync(settings(export_filter="(!(ou=HR))"), capsys)
    assert line["mode"] == "full" and kinds(line) == (0, 0, 0, 3)


def test_an_empty_container_without_syncprov_is_still_read_incrementally(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = SlapdServer(dbnosync=True)
    server.start()
    try:
        hub, staff, container, config = two_containers_to_a_partner(server, tmp_path)
        assert sync(config, capsys)["mode"] == "full"
        conn = server.connect()
        conn.add_s(f"uid=nnew,{staff}", [
            ("objectClass", [b"inetOrgPerson"]), ("uid", [b"nnew"]), ("cn", [b"Nia New"]),
            ("sn", [b"New"]), ("mail", [b"nnew@contoso.example"])])
        conn.unbind_s()
        line = sync(config, capsys)
        assert line["mode"] == "incremental" and kinds(line) == (1, 0, 0, 0), line
        assert len(foreign_view(server, container)) == PEOPLE + 1
    finally:
        server.destroy()


def test_lists_follow_their_members_incrementally(
        hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    """A member renamed or deleted moves the list's foreign members, without a full run."""
    groups = f"ou=Groups,{hub.base}"
    folder = f"ou=Partner,{hub.base}"
    hub.slapd.add_ou(folder)
    container = f"ou=Contoso,{folder}"
    config = hub.config(ldap_directory(hub.slapd, hub.folder, folder), name="partner",
                        mapping="generic-ldap", foreign_container=container,
                        export_containers=[hub.people, groups])
    assert sync(config, capsys)["counts"]["add"] == PEOPLE + 2
    sales = f"cn=site sales,{normalize_dn(container)}"
    before = foreign_view(hub.slapd, container)[sales]["member"]
    assert any(m.startswith("cn=Sam Wu") for m in before)
    conn = hub.slapd.connect()
    sam = next(dn for dn, a in entries(hub.slapd, container, "(cn=Sam Wu*)").items()
               if a["dirsyncAnchor"] == [hub_uuid(hub, "swu")])
    conn.modify_s(hub.person("swu"), [(ldap.MOD_REPLACE, "displayName", [b"Samuel Wu"])])
    conn.delete_s(hub.person("lbonifaz"))
    conn.unbind_s()
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["exit"] == 0, line
    # Sam renamed, Luis deleted, and one modify: the list's members.
    assert kinds(line) == (0, 1, 1, 1), line
    after = foreign_view(hub.slapd, container)[sales]["member"]
    assert sam not in after and f"cn=Samuel Wu,{container}" in after
    assert not any(m.startswith("cn=Luis Bonifaz") for m in after)
    assert any(m.startswith("cn=Uwe K") for m in after)
    incremental = foreign_view(hub.slapd, container)
    full = sync(config, capsys, "--full")
    assert kinds(full) == (0, 0, 0, 0) and foreign_view(hub.slapd, container) == incremental
