"""Ctrl-C and SIGTERM of a real ``dirsync sync``, and runs whose process died.

The first signal stops sending, lets the writes in flight finish, records
them and ends the run as ``interrupted`` with the counts of what was
applied; a second signal ends the process at once. A run whose process
died (kill -9) shows as ``died`` in ``status`` and in the metrics of the
next run, never as running for good; the next run converges.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dirsync.cli.main import main
from dirsync.state.store import StateStore
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import anchors, gal_row, gal_rows, hub_config, search, write_csv
from dirsync.testing.twoway import ldap_directory, write_config

#: A source whose first sync takes several seconds on a loaded machine.
ROWS = 4000

#: How long an interrupted run may take to end: the writes in flight finish
#: (each bounded by the directory's timeout, 30 s), then state and report.
END_BOUND = 45.0


def owned(slapd: SlapdServer, container: str, filt: str = "(dirsyncSource=gal)") -> int:
    return len(search(slapd, container, filt, ["1.1"]))


def start_sync(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(config), "sync",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def wait_until(process: subprocess.Popen[str], ready: object) -> None:
    deadline = time.monotonic() + 120
    while not ready():  # type: ignore[operator]
        if process.poll() is not None:
            pytest.fail(f"the sync ended too early: {process.stderr.read() if process.stderr else ''}")
        assert time.monotonic() < deadline, "the signal point was never reached"
        time.sleep(0.01)


def ended(process: subprocess.Popen[str]) -> tuple[int, str, float]:
    """Wait for the process; its status, stderr and how long it took to end."""
    started = time.monotonic()
    _, err = process.communicate(timeout=120)
    return process.returncode, err, time.monotonic() - started


def status_lines(config: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "status", "gal"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def going(config: Path) -> bool:
    """Whether the state shows a run of the connection going."""
    path = config.parent / "var" / "state.sqlite"
    if not path.exists():
        return False
    with StateStore(path) as state:
        return bool(state.unfinished_runs("gal"))


def running_counts(config: Path) -> dict[str, int]:
    """The counts so far of the connection's run that is going, read from the state."""
    path = config.parent / "var" / "state.sqlite"
    if not path.exists():
        return {}
    with StateStore(path) as state:
        going = state.unfinished_runs("gal")
    return going[-1].counts if going else {}


def converges(slapd: SlapdServer, container: str, rows: list[dict[str, str]], config: Path,
              capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    found = anchors(slapd, container)
    assert sorted(found) == sorted(r["Alias"] for r in rows)
    assert all(len(dns) == 1 for dns in found.values())
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["status"] == "ok" and line["counts"]["unchanged"] == len(rows)


@pytest.fixture
def setup(slapd: SlapdServer, base: str, tmp_path: Path) -> tuple[Path, Path, str]:
    container = f"ou=Import,{base}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(ROWS))
    config = hub_config(tmp_path, slapd, container, source, window=4)
    return config, source, container


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_adds_ends_the_run_as_interrupted(
        slapd: SlapdServer, setup: tuple[Path, Path, str], sig: signal.Signals,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, container = setup
    process = start_sync(config)
    wait_until(process, lambda: owned(slapd, container) >= 300)
    process.send_signal(sig)
    status, err, took = ended(process)
    assert status == 128 + sig, err
    assert took < END_BOUND, f"took {took:.1f}s to end"
    held = owned(slapd, container)
    assert 300 <= held < ROWS
    last = status_lines(config, capsys)[0]
    assert last["status"] == "interrupted", last
    assert last["counts"]["add"] == held      # what the hub holds, no more, no less
    assert last["counts"]["error"] == 0
    assert "interrupted on request" in str(last["message"])
    converges(slapd, container, gal_rows(ROWS), config, capsys)


def test_ctrl_c_during_modifies(slapd: SlapdServer, setup: tuple[Path, Path, str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    config, source, container = setup
    assert main(["-c", str(config), "sync"]) == 0
    rows = [gal_row(r["Alias"], Title="Manager") for r in gal_rows(ROWS)]
    write_csv(source, rows)
    process = start_sync(config)
    wait_until(process, lambda: owned(slapd, container, "(title=Manager)") >= 300)
    process.send_signal(signal.SIGINT)
    status, err, took = ended(process)
    assert status == 130, err
    assert took < END_BOUND
    modified = owned(slapd, container, "(title=Manager)")
    assert modified < ROWS
    last = status_lines(config, capsys)[0]
    assert last["status"] == "interrupted"
    assert last["counts"]["modify"] == modified and last["counts"]["error"] == 0
    converges(slapd, container, rows, config, capsys)
    assert owned(slapd, container, "(title=Manager)") == ROWS


def test_a_second_signal_ends_the_process_at_once_and_the_run_shows_as_died(
        slapd: SlapdServer, setup: tuple[Path, Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, container = setup
    process = start_sync(config)
    wait_until(process, lambda: owned(slapd, container) >= 300)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    status, err, took = ended(process)
    assert status == 130, err
    assert took < 10
    last = status_lines(config, capsys)[0]
    assert last["status"] in ("interrupted", "died"), last
    converges(slapd, container, gal_rows(ROWS), config, capsys)


def test_kill_9_shows_as_died_in_status_and_in_the_metrics(
        slapd: SlapdServer, setup: tuple[Path, Path, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, container = setup
    process = start_sync(config)
    # The running run's row holds the adds confirmed so far (written every second).
    wait_until(process, lambda: running_counts(config).get("add", 0) >= 1)
    seen = running_counts(config)["add"]
    process.kill()
    status, _, _ = ended(process)
    assert status == -signal.SIGKILL
    capsys.readouterr()
    assert main(["-c", str(config), "status", "gal"]) == 0
    text = capsys.readouterr().out
    assert " died " in text and " running " not in text, text
    assert "no changes" not in text
    last = status_lines(config, capsys)[0]
    assert last["status"] == "died" and last["ended"] is None
    # What the hub had confirmed a moment before: never more than the hub holds.
    assert seen <= last["counts"]["add"] <= owned(slapd, container)

    # A run killed again, and this time the next sync finds it (no status between).
    # Killed once its run is going: the first run may have added half the rows
    # already, and a process killed before its run starts leaves nothing to find.
    process = start_sync(config)
    wait_until(process, lambda: going(config) and owned(slapd, container) >= ROWS // 2)
    process.kill()
    ended(process)
    metrics = tmp_path / "dirsync.prom"
    capsys.readouterr()
    assert main(["-c", str(config), "sync", "--metrics-file", str(metrics)]) == 0
    prom = metrics.read_text()
    assert ('dirsync_runs_total{connection="gal",direction="import",mode="full",'
            'status="died"} 1.0') in prom, prom
    statuses = [line["status"] for line in status_lines(config, capsys)]
    assert statuses == ["ok", "died", "died"]
    converges(slapd, container, gal_rows(ROWS), config, capsys)


def test_a_run_that_is_alive_is_not_taken_for_dead(
        slapd: SlapdServer, setup: tuple[Path, Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    config, _, container = setup
    process = start_sync(config)
    try:
        wait_until(process, lambda: owned(slapd, container) >= 100)
        last = status_lines(config, capsys)[0]
        assert last["status"] == "running"
        # Nor does a second sync (or a plan) run the connection meanwhile.
        for command in ("sync", "plan"):
            capsys.readouterr()
            assert main(["-c", str(config), command]) == 1
            assert "connection 'gal' is being run by another process" in \
                capsys.readouterr().err
        assert status_lines(config, capsys)[0]["status"] == "running"
    finally:
        process.send_signal(signal.SIGTERM)
        ended(process)


EXPORT_ROWS = 3000


def test_ctrl_c_during_an_export_to_an_ldap_partner(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    people, partner = f"ou=People,{base}", f"ou=Partner,{base}"
    slapd.add_ou(people)
    slapd.add_ou(partner)
    conn = slapd.connect()
    try:
        for i in range(EXPORT_ROWS):
            uid = f"p{i:05d}"
            conn.add_s(f"uid={uid},{people}", [
                ("objectClass", [b"inetOrgPerson"]), ("uid", [uid.encode()]),
                ("cn", [f"Person {uid}".encode()]), ("sn", [uid.encode()]),
                ("mail", [f"{uid}@contoso.example".encode()])])
    finally:
        conn.unbind_s()
    hub = ldap_directory(slapd, tmp_path, base)
    foreign = {**ldap_directory(slapd, tmp_path, partner), "window": 4}
    container = f"ou=Contoso,{partner}"
    config = write_config(tmp_path, {"hub": hub, "foreign": foreign}, [{
        "name": "gal", "foreign": "foreign", "hub": "hub", "direction": "export",
        "export_containers": [people], "mapping": "generic-ldap",
        "foreign_container": container}])
    process = start_sync(config)
    wait_until(process, lambda: owned(slapd, partner) >= 300)
    process.send_signal(signal.SIGINT)
    status, err, took = ended(process)
    assert status == 130, err
    assert took < END_BOUND
    held = owned(slapd, partner)
    assert held < EXPORT_ROWS
    last = status_lines(config, capsys)[0]
    assert last["direction"] == "export" and last["status"] == "interrupted", last
    assert last["counts"]["add"] == held and last["counts"]["error"] == 0
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    assert owned(slapd, partner) == EXPORT_ROWS
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["counts"]["add"] == 0 and line["counts"]["unchanged"] == EXPORT_ROWS
