"""The report counts what the server confirmed, when the server dies mid-run.

A real ``dirsync sync`` runs as a subprocess against a slapd of its own; the
test kills slapd (SIGKILL) once a number of the run's writes are visible,
restarts it, and compares report.json and changes.ldif with what the hub
holds: confirmed changes are counted as applied, changes sent without an
answer as unknown, changes never sent as not attempted, none as errors.
The next run's report says what it found of the unknown ones.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dirsync.cli.main import main
from dirsync.state.store import StateStore
from dirsync.state.unconfirmed import FOUND, REDONE, Unconfirmed
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_row, gal_rows, hub_config, search, write_csv
from dirsync.testing.twoway import ldap_directory, write_config

ROWS = 1500


@pytest.fixture
def server(new_slapd: SlapdServer) -> SlapdServer:
    """A slapd of its own (it gets killed), writing with fsync: slow enough to
    be caught in the middle of a run."""
    new_slapd.start()
    new_slapd.add_suffix()
    return new_slapd


def run_until_killed(config: Path, slapd: SlapdServer, ready: Callable[[], bool]
                     ) -> dict[str, Any]:
    """``dirsync sync`` in a subprocess; SIGKILL slapd once ``ready()``; its JSON line."""
    process = subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(config), "--json",
                                "sync"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail("the sync ended before the kill point: "
                            + (process.stderr.read().decode() if process.stderr else ""))
            if time.monotonic() > deadline:
                pytest.fail("the kill point was never reached")
            time.sleep(0.005)
        slapd.stop(signal.SIGKILL)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, err.decode()
    assert b"Traceback" not in err
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def count(slapd: SlapdServer, container: str, filt: str = "(dirsyncSource=gal)") -> int:
    try:
        return len(search(slapd, container, filt, ["1.1"]))
    except Exception:  # noqa: BLE001 - the server is being killed
        return 0


def report(line: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(line["report"]) / "report.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def ldif_records(line: dict[str, Any], kind: str) -> int:
    """Change records of ``kind`` in changes.ldif, the import container's add aside."""
    text = (Path(line["report"]) / "changes.ldif").read_text(encoding="utf-8")
    records = [r for r in text.split("\n\n") if f"\nchangetype: {kind}\n" in r]
    return sum(1 for r in records if kind != "add" or "\ndirsyncAnchor: " in r)


def statuses(data: dict[str, Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for entry in data["entries"]:
        if not entry.get("container"):
            found[entry["status"]] = found.get(entry["status"], 0) + 1
    return found


def rerun(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_adds_cut_short_are_counted_as_the_hub_holds_them(
        server: SlapdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Import,{server.suffix}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(ROWS))
    config = hub_config(tmp_path, server, container, source)
    line = run_until_killed(config, server, lambda: count(server, container) >= ROWS // 3)
    server.start()
    held = count(server, container)
    counts = line["counts"]
    assert line["status"] == "errors" and "stopped early" in line["message"]
    assert counts["error"] == 0
    # Confirmed adds are what changes.ldif holds; the hub holds those, and
    # perhaps some of the unanswered ones, never more.
    assert counts["add"] == ldif_records(line, "add") > 0
    assert counts["add"] <= held <= counts["add"] + counts["unknown"], (counts, held)
    data = report(line)
    assert data["counts"] == counts
    found = statuses(data)
    assert found.get("applied", 0) == counts["add"]
    assert found.get("unknown", 0) == counts["unknown"]
    assert found.get("failed", 0) == 0
    # Every entry the report calls applied is in the hub.
    in_hub = {a["dirsyncAnchor"][0].decode()
              for a in search(server, container, "(dirsyncSource=gal)",
                              ["dirsyncAnchor"]).values()}
    applied = {e["anchor"] for e in data["entries"]
               if e["status"] == "applied" and not e.get("container")}
    assert applied <= in_hub

    # The next run finds the rest, and says what became of the unknown ones.
    line = rerun(config, capsys)
    assert line["counts"]["add"] == ROWS - held
    assert line["counts"]["unchanged"] == held
    assert count(server, container) == ROWS
    if counts["unknown"]:
        notes = [p["message"] for p in report(line)["problems"] if p["kind"] == "note"]
        found_applied = held - counts["add"]
        assert (f"{counts['unknown']} changes of the last run were not confirmed when its "
                f"connection was lost: {found_applied} found applied, "
                f"{counts['unknown'] - found_applied} changed by this run") in notes


def test_renames_cut_short_are_counted_as_the_hub_holds_them(
        server: SlapdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Import,{server.suffix}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(ROWS))
    config = hub_config(tmp_path, server, container, source)
    assert main(["-c", str(config), "sync"]) == 0
    # A new display name: each entry is renamed, then modified (cn, sn, displayName).
    write_csv(source, [gal_row(r["Alias"], **{"Display Name": f"Moved {r['Alias']}"})
                       for r in gal_rows(ROWS)])
    line = run_until_killed(config, server,
                            lambda: count(server, container, "(cn=Moved *)") >= ROWS // 5)
    server.start()
    moved = count(server, container, "(cn=Moved *)")
    counts = line["counts"]
    assert counts["error"] == 0
    assert counts["rename"] == ldif_records(line, "modrdn") > 0
    # Renames go one at a time: at most one is unanswered.
    assert counts["unknown"] <= 1
    assert counts["rename"] <= moved <= counts["rename"] + counts["unknown"], (counts, moved)
    assert counts["rename"] + counts["unknown"] + counts["not_attempted"] == ROWS
    data = report(line)
    found = statuses(data)
    # Renamed but not modified yet: the next run does the rest.
    assert found.get("partly applied", 0) + found.get("applied", 0) == counts["rename"]
    assert found.get("not attempted", 0) == counts["not_attempted"]

    line = rerun(config, capsys)
    assert count(server, container, "(cn=Moved *)") == ROWS
    assert line["counts"]["rename"] == ROWS - moved
    assert line["counts"]["modify"] + line["counts"]["rename"] == ROWS


def test_the_unconfirmed_anchors_are_kept_for_the_next_run_only(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as state:
        first = Unconfirmed(state, "gal", "import")
        assert first.summary() is None
        first.save([])
        assert state.cursor("gal", "import", "unconfirmed") is None   # nothing to keep
        first.save(["b", "a", None, "a"])
        second = Unconfirmed(state, "gal", "import")
        assert second.previous == {"a", "b"}
        assert second.unchanged("a") == FOUND and second.planned("b") == REDONE
        assert second.unchanged("c") is None
        assert second.summary() == ("2 changes of the last run were not confirmed when its "
                                    "connection was lost: 1 found applied, 1 changed by this "
                                    "run")
        second.save([])
        assert Unconfirmed(state, "gal", "import").previous == set()
        state.set_cursor("gal", "import", "unconfirmed", "not json")
        assert Unconfirmed(state, "gal", "import").previous == set()


def test_a_source_that_dies_leaves_no_hub_change_unanswered(
        slapd: SlapdServer, base: str, new_slapd: SlapdServer, tmp_path: Path) -> None:
    """The foreign server dies, the hub does not: every change sent to the hub
    still gets its answer, and the report counts exactly what the hub holds."""
    foreign = new_slapd
    foreign.dbnosync = True
    foreign.start()
    foreign.add_suffix()
    conn = foreign.connect()
    try:
        for i in range(3000):
            conn.add_s(f"uid=p{i:05d},{foreign.suffix}", [
                ("objectClass", [b"inetOrgPerson"]), ("uid", [f"p{i:05d}".encode()]),
                ("cn", [f"Person {i:05d}".encode()]), ("sn", [b"Person"]),
                ("mail", [f"p{i:05d}@fabrikam.example".encode()])])
    finally:
        conn.unbind_s()
    container = f"ou=Import,{base}"
    config = hub_config(tmp_path, slapd, container, tmp_path / "unused", mapping="generic-ldap",
                        name="gal")
    password = tmp_path / "foreign.pw"
    password.write_text(foreign.root_pw + "\n")
    text = config.read_text().replace(
        f'[directories.foreign]\nkind = "csv"\npath = "{tmp_path / "unused"}"\nkey = "Alias"',
        f'[directories.foreign]\nkind = "ldap"\nurl = "{foreign.url}"\n'
        f'base = "{foreign.suffix}"\nbind_dn = "{foreign.root_dn}"\n'
        f'password_file = "{password.name}"\npage_size = 20')
    config.write_text(text)
    line = run_until_killed(config, foreign, lambda: count(slapd, container) >= 500)
    counts = line["counts"]
    assert counts["unknown"] == 0 and counts["error"] == 0
    assert counts["add"] == count(slapd, container) == ldif_records(line, "add")


def test_an_export_cut_short_is_counted_as_the_foreign_server_holds_it(
        slapd: SlapdServer, base: str, server: SlapdServer, tmp_path: Path) -> None:
    people = f"ou=People,{base}"
    slapd.add_ou(people)
    conn = slapd.connect()
    try:
        for i in range(ROWS):
            conn.add_s(f"uid=p{i:05d},{people}", [
                ("objectClass", [b"inetOrgPerson"]), ("uid", [f"p{i:05d}".encode()]),
                ("cn", [f"Person {i:05d}".encode()]), ("sn", [b"Person"]),
                ("mail", [f"p{i:05d}@contoso.example".encode()])])
    finally:
        conn.unbind_s()
    container = f"ou=Contoso,{server.suffix}"
    config = write_config(tmp_path, {
        "hub": ldap_directory(slapd, tmp_path, base),
        "foreign": ldap_directory(server, tmp_path)}, [{
            "name": "partner", "foreign": "foreign", "hub": "hub", "direction": "export",
            "mapping": "generic-ldap", "export_containers": [people],
            "foreign_container": container, "proxy_writeback": "none"}])
    line = run_until_killed(config, server, lambda: count(
        server, container, "(dirsyncSource=partner)") >= ROWS // 3)
    server.start()
    held = count(server, container, "(dirsyncSource=partner)")
    counts = line["counts"]
    assert counts["error"] == 0
    assert counts["add"] == ldif_records(line, "add") > 0
    assert counts["add"] <= held <= counts["add"] + counts["unknown"], (counts, held)
    assert counts["add"] + counts["unknown"] + counts["not_attempted"] == ROWS
    found = statuses(report(line))
    assert found.get("unknown", 0) == counts["unknown"]
    assert found.get("not attempted", 0) == counts["not_attempted"]
