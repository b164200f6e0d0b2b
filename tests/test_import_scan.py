"""The hub scan of an import: entries with this connection's marker that
cannot be matched are reported and left alone, whichever way the hub is
read (in C for DN and anchor only, dirsync.sync.anchorscan, when the run
compares by state; through python-ldap with the owned attributes in a
full run), and the first entry with an anchor keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import csn_snapshot, first, gal_rows, hub_config, search, write_csv


def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str
         ) -> tuple[int, dict[str, object], dict[str, object]]:
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "sync", *args])
    line: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    return status, line, report


@pytest.mark.parametrize("full", [False, True], ids=["by-state", "full"])
def test_marked_entries_without_an_anchor_of_their_own_are_left_alone(
        slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        full: bool) -> None:
    container = f"ou=Import,{base}"
    rows = gal_rows(5)
    source = write_csv(tmp_path / "gal.csv", rows)
    # With lists as groups, a changed file is read whole and compared with
    # the state and the hub (not by row digest, dirsync.sync.filediff).
    config = hub_config(tmp_path, slapd, container, source, lists="group")
    assert sync(config, capsys)[0] == 0
    marked = {"objectClass": [b"inetOrgPerson", b"dirsyncObject"], "sn": [b"Hand"],
              "dirsyncSource": [b"gal"]}
    conn = slapd.connect()
    try:
        conn.add_s(f"cn=Second u000001,{container}", list(
            {**marked, "cn": [b"Second u000001"], "dirsyncAnchor": [b"u000001"]}.items()))
        conn.add_s(f"cn=No anchor,{container}", list({**marked, "cn": [b"No anchor"]}.items()))
    finally:
        conn.unbind_s()
    before = csn_snapshot(slapd, container)
    # The same rows in another order: the file is read again, the hub scanned.
    write_csv(source, rows[::-1])
    status, line, report = sync(config, capsys, *(["--full"] if full else []))
    assert line["mode"] == ("full" if full else "incremental")
    assert status == 1 and line["status"] == "errors"
    counts = line["counts"]
    assert isinstance(counts, dict)
    assert counts["conflict"] == 2 and counts["unchanged"] == 5
    assert counts["add"] + counts["modify"] + counts["delete"] + counts["rename"] == 0
    problems = {p["dn"].lower(): p["message"] for p in report["problems"]
                if p["kind"] == "conflict"}
    assert problems == {
        f"cn=second u000001,{container}".lower():
            f"left alone: it has the anchor 'u000001' of cn=User u000001,{container}",
        f"cn=no anchor,{container}".lower():
            "left alone: it carries this connection's marker but no anchor"}
    # Nothing was written: the hand-made entries and the real one are as they were.
    assert csn_snapshot(slapd, container) == before
    found = search(slapd, container, "(dirsyncAnchor=u000001)", ["cn"])
    assert sorted(first(attrs, "cn") or "" for attrs in found.values()) == [
        "Second u000001", "User u000001"]
