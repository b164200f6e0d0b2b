"""The message tracking log: one JSON object per line for every event.

Events: ``received``, ``translated``, ``routed``, ``relayed`` (handed to an
SMTP next hop), ``delivered`` (written to an X.400 gateway queue),
``deferred``, ``failed`` and ``report_sent``. Each line carries the time,
the event, the queue id (``message_id``) and the recipient it concerns,
plus event-specific fields. Lines are written whole under a lock and
flushed, so ``tail -f`` and ``jq`` see complete records; they are not
fsynced (the queue journal is what recovery trusts).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO, Any

EVENTS = frozenset({"received", "translated", "routed", "relayed", "delivered", "deferred",
                    "failed", "report_sent"})


class Tracker:
    """Appends tracking events to a JSON-lines file (or nowhere, with ``path=None``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Open for the relay's lifetime; close() ends it.
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def event(self, event: str, message_id: str, recipient: str | None = None,
              **fields: Any) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown tracking event {event!r}")
        now = time.time()
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now * 1000) % 1000:03d}Z",
            "event": event,
            "message_id": message_id,
            "recipient": recipient,
        }
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in a tracking log (for tests, tools and benchmarks)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events
