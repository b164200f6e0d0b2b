"""``dirsync schedule``: run every connection on its schedule until stopped.

APScheduler 3 does the timing. Each connection is one job with
``max_instances=1`` (a run that is still going when its next tick comes is
not started twice; the tick is skipped) and ``coalesce=True`` (ticks missed
while the process was busy or asleep become one run). A file lock per
connection in the state folder keeps a second ``dirsync schedule`` (or a
``dirsync sync`` from cron) from running the same connection at the same
time. A failed run is logged and tried again at the next tick.

SIGTERM or SIGINT sets :data:`dirsync.interrupt.stop_requested`: the engine
finishes the changes in flight, records them, ends the run as
``interrupted``, and the process exits 0; a second signal ends it at once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dirsync.errors import ConfigError
from dirsync.interrupt import stop_requested, stopping_on_signals
from dirsync.schedule.metrics import Metrics
from dirsync.state.locks import ConnectionLock, LockBusy

log = logging.getLogger("dirsync.schedule")

_INTERVAL = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_schedule(text: str) -> BaseTrigger:
    """A cron line (``*/15 * * * *``) or an interval (``30s``, ``15m``, ``2h``, ``1d``)."""
    match = _INTERVAL.match(text)
    if match:
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        if seconds <= 0:
            raise ValueError("an interval must be longer than zero")
        return IntervalTrigger(seconds=seconds)
    if len(text.split()) != 5:
        raise ValueError(f"{text!r} is neither a cron line of five fields nor an interval "
                         "such as '15m'")
    try:
        return CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron line: {exc}") from exc


@dataclass
class RunOutcome:
    """What a run reports back for logs and metrics."""

    status: str  # ok | errors | stopped
    mode: str
    counts: dict[str, int]
    direction: str = "import"


RunFunction = Callable[[str], Sequence[RunOutcome]]


class Scheduler:
    def __init__(self, schedules: dict[str, str], run: RunFunction, state_dir: Path, *,
                 metrics_file: Path | None = None, metrics_port: int | None = None) -> None:
        problems = []
        self.triggers: dict[str, BaseTrigger] = {}
        for name, text in schedules.items():
            try:
                self.triggers[name] = parse_schedule(text)
            except ValueError as exc:
                problems.append(f"connections[{name}].schedule: {exc}")
        if problems:
            raise ConfigError(problems)
        self.run = run
        self.state_dir = state_dir
        self.metrics = Metrics()
        self.metrics_file = metrics_file
        self.metrics_port = metrics_port

    def run_connection(self, name: str) -> bool:
        """One run under the connection's lock; False if skipped, failed, had
        failed entries or was stopped by a safety limit."""
        if stop_requested.is_set():
            return False
        lock = ConnectionLock(self.state_dir, name)
        try:
            lock.acquire()
        except LockBusy as exc:
            log.warning("skipped: %s", exc, extra={"fields": {"connection": name,
                                                               "action": "skip"}})
            return False
        started = time.monotonic()
        try:
            outcomes = self.run(name)
        except Exception as exc:  # a failed run must not stop the scheduler
            log.error("run of %s failed: %s; trying again at the next tick", name, exc,
                      extra={"fields": {"connection": name, "action": "run",
                                        "result": "failed"}})
            self.metrics.record(connection=name, direction="import", status="failed",
                                mode="unknown", counts={}, duration=time.monotonic() - started)
            self._write_metrics()
            return False
        finally:
            lock.release()
        for outcome in outcomes:
            self.metrics.record(connection=name, direction=outcome.direction,
                                status=outcome.status, mode=outcome.mode,
                                counts=outcome.counts, duration=time.monotonic() - started)
        self._write_metrics()
        # As `dirsync sync` exits 1 for a run with failed entries or a safety
        # stop, so does `--once`: a timer's unit then shows as failed.
        return all(outcome.status == "ok" for outcome in outcomes)

    def _write_metrics(self) -> None:
        if self.metrics_file is not None:
            self.metrics.write(self.metrics_file)

    def run_once(self) -> int:
        """``--once``: every connection one time, in config order.

        SIGTERM or SIGINT ends the run in flight as interrupted, starts no
        other, and exits 0 (as the long-running form does).
        """
        with stopping_on_signals():
            results = [self.run_connection(name) for name in self.triggers]
            if stop_requested.is_set():
                return 0
        return 0 if all(results) else 1

    def serve(self, ready: Callable[[], None] | None = None,
              until: threading.Event | None = None, handle_signals: bool = True) -> int:
        """Run until SIGTERM or SIGINT (or ``until`` is set); returns 0."""
        if self.metrics_port is not None:
            self.metrics.serve(self.metrics_port)
        scheduler = BackgroundScheduler(job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        for name, trigger in self.triggers.items():
            # Interval jobs run at start, then every interval; cron jobs wait
            # for their time (next_run_time=None would pause a job, so leave it out).
            first = ({"next_run_time": datetime.now().astimezone()}
                     if isinstance(trigger, IntervalTrigger) else {})
            scheduler.add_job(self.run_connection, trigger, args=[name], id=name, name=name,
                              **first)
        done = until or threading.Event()
        signals: AbstractContextManager[None] = stopping_on_signals(then=done.set) if handle_signals else nullcontext()
        with signals:
            scheduler.start()
            if ready:
                ready()
            try:
                done.wait()
            finally:
                scheduler.shutdown(wait=True)  # the run in flight ends at its next change
        return 0
