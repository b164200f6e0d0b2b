"""kill -9 of a real ``dirsync sync`` at several points, then a rerun that converges.

The sync runs as a subprocess against slapd; the test watches the hub and
kills the process with SIGKILL once a given number of its writes are
visible: during the adds of a first sync, during modifies, during deletes.
The next run must reach the same hub as an uninterrupted one: every
source entry exactly once, with its attributes, and nothing else; the run
after it must find nothing to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import (
    anchors,
    first,
    gal_row,
    gal_rows,
    hub_config,
    kill_when,
    search,
    write_csv,
)

ROWS = 1500



def count(slapd: SlapdServer, container: str, filt: str = "(dirsyncSource=gal)") -> int:
    return len(search(slapd, container, filt, ["1.1"]))


def check_converged(slapd: SlapdServer, container: str, rows: list[dict[str, str]],
                    config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync", "--allow-deletes", str(ROWS)]) == 0
    found = anchors(slapd, container)
    assert sorted(found) == sorted(r["Alias"] for r in rows), "missing or extra entries"
    assert all(len(dns) == 1 for dns in found.values()), "duplicates"
    entries = search(slapd, container, "(dirsyncSource=gal)", ["dirsyncAnchor", "title", "cn"])
    titles = {first(a, "dirsyncAnchor"): first(a, "title") for a in entries.values()}
    assert titles == {r["Alias"]: r["Title"] for r in rows}
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["counts"]["unchanged"] == len(rows)
    assert sum(line["counts"][k] for k in ("add", "modify", "rename", "delete")) == 0


@pytest.fixture
def setup(slapd: SlapdServer, base: str, tmp_path: Path) -> tuple[Path, Path, str]:
    container = f"ou=Import,{base}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(ROWS))
    # A small window and page keep the server's view close to what was sent.
    config = hub_config(tmp_path, slapd, container, source, window=4)
    return config, source, container


@pytest.mark.parametrize("point", [1, ROWS // 2, ROWS * 4 // 5])
def test_killed_during_the_adds_of_a_first_sync(
        slapd: SlapdServer, setup: tuple[Path, Path, str], point: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, container = setup
    kill_when(config, lambda: count(slapd, container) >= point)
    assert count(slapd, container) < ROWS
    check_converged(slapd, container, gal_rows(ROWS), config, capsys)


def test_killed_during_modifies_and_renames(
        slapd: SlapdServer, setup: tuple[Path, Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    config, source, container = setup
    assert main(["-c", str(config), "sync"]) == 0
    rows = [gal_row(r["Alias"], Title="Manager",
                    **({"Display Name": f"Moved {r['Alias']}"} if i % 10 == 0 else {}))
            for i, r in enumerate(gal_rows(ROWS))]
    write_csv(source, rows)
    kill_when(config, lambda: count(slapd, container, "(title=Manager)") >= ROWS // 3)
    assert count(slapd, container, "(title=Manager)") < ROWS
    check_converged(slapd, container, rows, config, capsys)
    assert count(slapd, container, "(cn=Moved *)") == ROWS // 10


def test_killed_during_deletes(slapd: SlapdServer, setup: tuple[Path, Path, str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    config, source, container = setup
    assert main(["-c", str(config), "sync"]) == 0
    rows = gal_rows(ROWS)[: ROWS // 3]
    write_csv(source, rows)
    kill_when(config, lambda: count(slapd, container) <= ROWS - ROWS // 3,
              "--allow-deletes", str(ROWS))
    assert count(slapd, container) > len(rows)
    check_converged(slapd, container, rows, config, capsys)


def test_a_state_store_lost_is_rebuilt_from_the_hub(
        slapd: SlapdServer, setup: tuple[Path, Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, container = setup
    assert main(["-c", str(config), "sync"]) == 0
    for path in (config.parent / "var").glob("state.sqlite*"):
        path.unlink()
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["mode"] == "full" and line["counts"]["unchanged"] == ROWS
    check_converged(slapd, container, gal_rows(ROWS), config, capsys)


def test_killed_during_the_adds_of_a_later_run(
        slapd: SlapdServer, setup: tuple[Path, Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Adds of an incremental run (the hub already holds the connection's entries)."""
    config, source, container = setup
    write_csv(source, gal_rows(100))
    assert main(["-c", str(config), "sync"]) == 0
    rows = gal_rows(ROWS)
    write_csv(source, rows)
    # Soon after the adds begin: a fast run makes its last 750 adds in less
    # time than one count of the container takes under load.
    kill_when(config, lambda: count(slapd, container) >= 200)
    assert count(slapd, container) < ROWS
    check_converged(slapd, container, rows, config, capsys)
