"""The scheduler's timing, overlap and locking, with a plain run function."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dirsync.errors import ConfigError
from dirsync.interrupt import stop_requested
from dirsync.schedule.scheduler import RunOutcome, Scheduler, parse_schedule
from dirsync.state.locks import ConnectionLock, LockBusy


@pytest.fixture(autouse=True)
def clear_stop() -> None:
    stop_requested.clear()


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200),
                                                ("1d", 86400), (" 5 min ", 300)])
def test_intervals(text: str, seconds: int) -> None:
    trigger = parse_schedule(text)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval.total_seconds() == seconds


def test_cron_lines() -> None:
    assert isinstance(parse_schedule("*/15 * * * *"), CronTrigger)


@pytest.mark.parametrize("text", ["every day", "* * *", "61 * * * *", "0s"])
def test_bad_schedules(text: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(text)


def test_a_bad_schedule_is_a_config_error_naming_the_connection(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Scheduler({"ok": "1m", "po1": "sometimes"}, lambda n: [], tmp_path)
    assert "connections[po1].schedule" in str(caught.value)


def test_two_connections_run_on_their_intervals(tmp_path: Path) -> None:
    seen: dict[str, list[float]] = {"a": [], "b": []}

    def run(name: str) -> list[RunOutcome]:
        seen[name].append(time.monotonic())
        return [RunOutcome("ok", "incremental", {"add": 1})]

    scheduler = Scheduler({"a": "1s", "b": "2s"}, run, tmp_path,
                          metrics_file=tmp_path / "metrics.prom")
    done = threading.Event()
    thread = threading.Thread(target=lambda: _serve_until(scheduler, done))
    thread.start()
    time.sleep(4.5)
    done.set()
    thread.join(10)
    assert 4 <= len(seen["a"]) <= 6 and 2 <= len(seen["b"]) <= 4
    gaps = [b - a for a, b in zip(seen["a"], seen["a"][1:])]
    assert all(0.7 < g < 1.5 for g in gaps), gaps
    text = (tmp_path / "metrics.prom").read_text()
    assert 'dirsync_runs_total{connection="a",direction="import",mode="incremental",' \
           'status="ok"}' in text
    assert 'dirsync_changes_total{connection="b",direction="import",kind="add"}' in text


def _serve_until(scheduler: Scheduler, done: threading.Event) -> None:
    # Not the main thread, so no signal handlers: the event stops it instead.
    scheduler.serve(until=done, handle_signals=False)


def test_an_overlapping_run_is_skipped(tmp_path: Path) -> None:
    running = 0
    peak = 0
    runs = 0
    lock = threading.Lock()

    def slow(name: str) -> list[RunOutcome]:
        nonlocal running, peak, runs
        with lock:
            running += 1
            runs += 1
            peak = max(peak, running)
        time.sleep(2.2)  # longer than the 1 s interval
        with lock:
            running -= 1
        return [RunOutcome("ok", "full", {})]

    scheduler = Scheduler({"slow": "1s"}, slow, tmp_path)
    done = threading.Event()
    thread = threading.Thread(target=lambda: _serve_until(scheduler, done))
    thread.start()
    time.sleep(4.0)
    done.set()
    thread.join(10)
    assert peak == 1
    assert runs == 2  # at 0 s and after the first ended (ticks during it were skipped)


HOLD = """
import sys, time
from pathlib import Path
from dirsync.state.locks import ConnectionLock
lock = ConnectionLock(Path(sys.argv[1]), "po1")
lock.acquire()
print("held", flush=True)
time.sleep(30)
"""


def test_a_second_process_does_not_run_the_same_connection(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            ConnectionLock(tmp_path, "po1").acquire()
        calls: list[str] = []
        scheduler = Scheduler({"po1": "1m"}, lambda n: calls.append(n) or [], tmp_path)
        assert scheduler.run_connection("po1") is False and calls == []
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # The kernel dropped the dead holder's lock: the connection runs again.
    with ConnectionLock(tmp_path, "po1"):
        pass


def test_a_failed_run_is_logged_and_the_next_tick_runs(tmp_path: Path) -> None:
    attempts: list[int] = []

    def flaky(name: str) -> list[RunOutcome]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("hub went away")
        return [RunOutcome("ok", "full", {})]

    scheduler = Scheduler({"x": "1m"}, flaky, tmp_path)
    assert scheduler.run_connection("x") is False
    assert scheduler.run_connection("x") is True
    assert len(attempts) == 2


def test_once_runs_every_connection(tmp_path: Path) -> None:
    calls: list[str] = []
    scheduler = Scheduler({"a": "1m", "b": "*/5 * * * *"},
                          lambda n: calls.append(n) or [RunOutcome("ok", "full", {})], tmp_path)
    assert scheduler.run_once() == 0 and calls == ["a", "b"]
