"""``dirsync schedule`` as a real process: timing, overlaps, SIGTERM, two processes, bad config."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from dirsync.state.store import RunRecord, StateStore
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import anchors, gal_rows, hub_config, write_csv

#: Rows of a source whose first sync lasts a few seconds.
SLOW_ROWS = 4000


def two_connections(tmp_path: Path, slapd: SlapdServer, base: str, schedule: str,
                    rows: int = 5) -> Path:
    """Connections "a" and "b", each a CSV source on ``schedule``."""
    config = hub_config(tmp_path, slapd, f"ou=A,{base}",
                        write_csv(tmp_path / "a.csv", gal_rows(rows, "a")), name="a",
                        extra=f'schedule = "{schedule}"')
    write_csv(tmp_path / "b.csv", gal_rows(5, "b"))
    with open(config, "a", encoding="utf-8") as stream:
        stream.write(f'\n[directories.b]\nkind = "csv"\npath = "{tmp_path / "b.csv"}"\n'
                     'key = "Alias"\n\n[[connections]]\nname = "b"\nforeign = "b"\n'
                     f'hub = "hub"\nmapping = "csv-gal"\nimport_container = "ou=B,{base}"\n'
                     f'schedule = "{schedule}"\n')
    return config


@contextmanager
def scheduling(config: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(config), "-v",
                                "schedule", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def stop(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def runs(config: Path, connection: str) -> list[RunRecord]:
    with StateStore(config.parent / "var" / "state.sqlite") as state:
        return list(reversed(state.runs(connection, limit=100)))


def wait_for_run(config: Path, connection: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (config.parent / "var" / "state.sqlite").exists() and runs(config, connection):
            return
        time.sleep(0.05)
    raise AssertionError(f"no run of {connection} started")


def test_two_connections_run_on_time(slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    config = two_connections(tmp_path, slapd, base, "2s")
    with scheduling(config) as process:
        time.sleep(5.0)
        status, err = stop(process)
    assert status == 0, err
    for name in ("a", "b"):
        done = runs(config, name)
        assert len(done) >= 2 and all(r.outcome == "ok" for r in done), (name, done, err)
        starts = [datetime.fromisoformat(r.started) for r in done]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        assert all(1.5 <= gap <= 3.0 for gap in gaps), gaps
    assert len(anchors(slapd, f"ou=A,{base}", "a")) == 5
    assert len(anchors(slapd, f"ou=B,{base}", "b")) == 5


def overlapping(records: list[RunRecord]) -> bool:
    spans = sorted((r.started, r.ended or "9") for r in records)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_an_overlapping_run_is_skipped(slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    config = two_connections(tmp_path, slapd, base, "1s", rows=SLOW_ROWS)
    with scheduling(config) as process:
        wait_for_run(config, "a")
        time.sleep(3.0)
        status, err = stop(process)
    assert status == 0, err
    assert "maximum number of running instances reached" in err
    assert not overlapping(runs(config, "a"))


def test_sigterm_in_a_run_leaves_consistent_state(slapd: SlapdServer, base: str,
                                                  tmp_path: Path) -> None:
    config = two_connections(tmp_path, slapd, base, "1h", rows=SLOW_ROWS)
    container = f"ou=A,{base}"
    with scheduling(config) as process:
        deadline = time.monotonic() + 60
        while len(anchors(slapd, container, "a")) < 200:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        status, err = stop(process)
    assert status == 0, err
    stopped = runs(config, "a")[-1]
    assert stopped.outcome == "interrupted" and "interrupted on request" in (stopped.message or "")
    held = anchors(slapd, container, "a")
    assert 200 <= len(held) < SLOW_ROWS
    with StateStore(config.parent / "var" / "state.sqlite") as state:
        assert set(state.entries("a")) <= set(held)     # no row without its entry
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(config), "sync", "a"],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    owned = anchors(slapd, container, "a")
    assert len(owned) == SLOW_ROWS and all(len(dns) == 1 for dns in owned.values())


def test_a_second_process_does_not_run_the_same_connection(
        slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    config = two_connections(tmp_path, slapd, base, "1s", rows=SLOW_ROWS)
    with scheduling(config) as first:
        wait_for_run(config, "a")
        with scheduling(config) as second:
            time.sleep(2.5)
            status2, err2 = stop(second)
        status1, err1 = stop(first)
    assert (status1, status2) == (0, 0), err1 + err2
    assert "connection 'a' is being run by another process" in err2
    assert not overlapping(runs(config, "a"))


def test_a_config_error_at_start_exits_2(slapd: SlapdServer, base: str,
                                         tmp_path: Path) -> None:
    config = two_connections(tmp_path, slapd, base, "61 * * * *")
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(config), "schedule"],
                          check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ})
    assert done.returncode == 2
    assert "schedule: '61 * * * *' is not a valid cron line" in done.stderr
