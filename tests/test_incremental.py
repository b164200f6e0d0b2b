"""Change detection against a real slapd: syncrepl cookies, timestamps, file fingerprints."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.state.store import StateStore
from dirsync.sync.changestate import COOKIE
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_rows, hub_config, search, write_csv

PEOPLE = ("ann", "Ann Lee"), ("bob", "Bob Ray"), ("cy", "Cy Young")


def person(uid: str, cn: str) -> list[tuple[str, list[bytes]]]:
    return [("objectClass", [b"inetOrgPerson"]), ("uid", [uid.encode()]),
            ("cn", [cn.encode()]), ("sn", [cn.split()[-1].encode()]),
            ("mail", [f"{uid}@fabrikam.example".encode()])]


def ldap_source(tmp_path: Path, hub: SlapdServer, source: SlapdServer, foreign: str,
                container: str, extra: str = "") -> Path:
    """A config syncing ``foreign`` on ``source`` (generic-ldap) into ``container`` on ``hub``."""
    config = hub_config(tmp_path, hub, container, tmp_path / "unused", mapping="generic-ldap",
                        name="fab", extra=extra)
    (tmp_path / "source.pw").write_text(source.root_pw + "\n")
    text = config.read_text().replace(
        f'[directories.foreign]\nkind = "csv"\npath = "{tmp_path / "unused"}"\nkey = "Alias"',
        f'[directories.foreign]\nkind = "ldap"\nurl = "{source.url}"\nbase = "{foreign}"\n'
        f'bind_dn = "{source.root_dn}"\npassword_file = "source.pw"')
    config.write_text(text)
    return config


def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "sync", *args])
    out = capsys.readouterr().out.strip().splitlines()
    line: dict[str, object] = json.loads(out[-1])
    line["exit"] = status
    return line


def hub_view(server: SlapdServer, container: str) -> dict[str, dict[str, list[bytes]]]:
    """The container's entries without the attributes every write changes."""
    found = search(server, container, "(dirsyncSource=*)", attrs=["*"])
    return {dn.lower(): {k.lower(): sorted(v) for k, v in attrs.items()}
            for dn, attrs in found.items()}


def populate(server: SlapdServer, foreign: str) -> ldap.ldapobject.LDAPObject:
    conn = server.connect()
    server.add_ou(foreign)
    for uid, cn in PEOPLE:
        conn.add_s(f"uid={uid},{foreign}", person(uid, cn))
    return conn


def change_everything(conn: ldap.ldapobject.LDAPObject, foreign: str) -> None:
    """An add, a modify, a delete and a rename."""
    conn.add_s(f"uid=dee,{foreign}", person("dee", "Dee Hall"))
    conn.modify_s(f"uid=ann,{foreign}", [(ldap.MOD_REPLACE, "mail", [b"ann.lee@fabrikam.example"])])
    conn.delete_s(f"uid=cy,{foreign}")
    conn.modify_s(f"uid=bob,{foreign}", [(ldap.MOD_REPLACE, "cn", [b"Robert Ray"])])


def check_changes_seen(line: dict[str, object], server: SlapdServer, container: str) -> None:
    assert line["mode"] == "incremental" and line["exit"] == 0, line
    counts = line["counts"]
    assert isinstance(counts, dict)
    assert (counts["add"], counts["modify"], counts["delete"], counts["rename"]) == (1, 1, 1, 1)
    names = sorted(dn.split(",")[0] for dn in hub_view(server, container))
    assert names == ["cn=ann lee", "cn=dee hall", "cn=robert ray"]


def test_changes_seen_incrementally_and_a_full_run_agrees(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    foreign, container = f"ou=Foreign,{base}", f"ou=Import,{base}"
    conn = populate(slapd, foreign)
    config = ldap_source(tmp_path, slapd, slapd, foreign, container)
    first = sync(config, capsys)
    assert first["mode"] == "full" and first["counts"]["add"] == 3  # type: ignore[index]
    again = sync(config, capsys)
    # Nothing changed: nothing read, and every entry counted as in step.
    assert again["mode"] == "incremental" and again["counts"] == {  # type: ignore[comparison-overlap]
        **again["counts"], "add": 0, "unchanged": 3}  # type: ignore[dict-item]
    change_everything(conn, foreign)
    check_changes_seen(sync(config, capsys), slapd, container)
    incremental = hub_view(slapd, container)
    full = sync(config, capsys, "--full")
    assert full["mode"] == "full" and full["counts"]["unchanged"] == 3  # type: ignore[index]
    assert hub_view(slapd, container) == incremental
    assert sync(config, capsys)["mode"] == "incremental"


def own_server(**options: object) -> SlapdServer:
    server = SlapdServer(dbnosync=True, **options)  # type: ignore[arg-type]
    server.start()
    server.add_suffix()
    return server


@pytest.mark.parametrize("sessionlog", [100, None], ids=["sessionlog", "present-phase"])
def test_deletes_both_ways_and_after_a_restart(
        slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        sessionlog: int | None) -> None:
    source = own_server(syncprov=True, sessionlog=sessionlog)
    try:
        foreign, container = f"ou=Foreign,{source.suffix}", f"ou=Import,{base}"
        conn = populate(source, foreign)
        config = ldap_source(tmp_path, slapd, source, foreign, container)
        assert sync(config, capsys)["mode"] == "full"
        change_everything(conn, foreign)
        check_changes_seen(sync(config, capsys), slapd, container)
        conn.unbind_s()
        # slapd 2.5 answers with a present phase after a restart, session log or not.
        source.restart()
        conn = source.connect()
        conn.delete_s(f"uid=dee,{foreign}")
        line = sync(config, capsys)
        assert line["mode"] == "incremental" and line["counts"]["delete"] == 1  # type: ignore[index]
        assert sorted(dn.split(",")[0] for dn in hub_view(slapd, container)) == [
            "cn=ann lee", "cn=robert ray"]
    finally:
        source.destroy()


def test_a_cookie_the_server_refuses_leads_to_a_full_run(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    foreign, container = f"ou=Foreign,{base}", f"ou=Import,{base}"
    conn = populate(slapd, foreign)
    config = ldap_source(tmp_path, slapd, slapd, foreign, container)
    sync(config, capsys)
    # A cookie from the future: "consumer state is newer than provider".
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        state.set_cursor("fab", "import", COOKIE,
                         "rid=000,csn=29991231235959.999999Z#000000#000#000000")
    conn.delete_s(f"uid=cy,{foreign}")
    with caplog.at_level("INFO", logger="dirsync.incremental"):
        line = sync(config, capsys)
    assert line["mode"] == "full" and line["counts"]["delete"] == 1  # type: ignore[index]
    assert "cannot serve the stored cookie" in caplog.text
    assert sync(config, capsys)["mode"] == "incremental"


def test_the_timestamp_fallback_without_syncprov(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = own_server()
    try:
        foreign, container = f"ou=Foreign,{source.suffix}", f"ou=Import,{base}"
        conn = populate(source, foreign)
        config = ldap_source(tmp_path, slapd, source, foreign, container)
        assert sync(config, capsys)["mode"] == "full"
        change_everything(conn, foreign)
        check_changes_seen(sync(config, capsys), slapd, container)
        incremental = hub_view(slapd, container)
        assert sync(config, capsys, "--full")["counts"]["unchanged"] == 3  # type: ignore[index]
        assert hub_view(slapd, container) == incremental
    finally:
        source.destroy()


def test_full_every_brings_a_full_run(slapd: SlapdServer, base: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    foreign, container = f"ou=Foreign,{base}", f"ou=Import,{base}"
    populate(slapd, foreign)
    config = ldap_source(tmp_path, slapd, slapd, foreign, container, extra='full_every = "1s"')
    assert sync(config, capsys)["mode"] == "full"
    time.sleep(1.1)
    assert sync(config, capsys)["mode"] == "full"


def test_an_unchanged_file_is_not_read(slapd: SlapdServer, base: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rows = gal_rows(5)
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, f"ou=Import,{base}", source)
    assert sync(config, capsys)["counts"]["add"] == 5  # type: ignore[index]
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["message"] == "source unchanged"
    os.utime(source)                     # touched, same content: still not re-read
    assert sync(config, capsys)["message"] == "source unchanged"
    rows[0]["Title"] = "Manager"
    write_csv(source, rows)
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["counts"]["modify"] == 1  # type: ignore[index]
    assert sync(config, capsys)["message"] == "source unchanged"
    metrics = tmp_path / "metrics.prom"
    assert sync(config, capsys, "--metrics-file", str(metrics))["exit"] == 0
    text = metrics.read_text()
    assert 'connection="gal"' in text and "dirsync_runs_total" in text
