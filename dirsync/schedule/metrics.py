"""Run metrics in the Prometheus text format (the seeds' performance counters).

One registry per process. After each run the scheduler (or ``sync``) records
the run here; ``--metrics-file`` rewrites a file atomically (for node
exporter's textfile collector), ``--metrics-port`` serves ``/metrics`` on
loopback.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client import write_to_textfile as _write_textfile

LABELS = ("connection", "direction")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("dirsync_runs", "Sync runs, by outcome",
                            (*LABELS, "status", "mode"), registry=self.registry)
        self.changes = Counter("dirsync_changes", "Changes applied, by kind",
                               (*LABELS, "kind"), registry=self.registry)
        self.errors = Counter("dirsync_entry_errors", "Entries that failed or were rejected",
                              LABELS, registry=self.registry)
        self.duration = Gauge("dirsync_last_run_duration_seconds",
                              "Wall time of the last run", LABELS, registry=self.registry)
        self.last_success = Gauge("dirsync_last_success_timestamp_seconds",
                                  "Unix time the last successful run ended", LABELS,
                                  registry=self.registry)
        self.last_run = Gauge("dirsync_last_run_timestamp_seconds",
                              "Unix time the last run ended", LABELS, registry=self.registry)

    def record(self, *, connection: str, direction: str, status: str, mode: str,
               counts: Mapping[str, int], duration: float, ended: float | None = None) -> None:
        """One finished run; ``counts`` as in the report (add, modify, ...)."""
        ended = time.time() if ended is None else ended
        labels = {"connection": connection, "direction": direction}
        self.runs.labels(status=status, mode=mode, **labels).inc()
        for kind in ("add", "modify", "rename", "delete"):
            if counts.get(kind):
                self.changes.labels(kind=kind, **labels).inc(counts[kind])
        if counts.get("error"):
            self.errors.labels(**labels).inc(counts["error"])
        self.duration.labels(**labels).set(duration)
        self.last_run.labels(**labels).set(ended)
        if status == "ok":
            self.last_success.labels(**labels).set(ended)

    def write(self, path: Path) -> None:
        """Rewrite ``path`` atomically (prometheus_client writes a temp file and renames)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_textfile(str(path), self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve /metrics on loopback from a background thread."""
        return start_http_server(port, addr=addr, registry=self.registry)
