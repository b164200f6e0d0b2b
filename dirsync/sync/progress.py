"""A progress bar for long runs on a terminal, and nothing otherwise.

The bar goes to stderr, appears only when both stdout and stderr are
terminals (never when output is piped or ``--json`` is on) and only once a
step has taken longer than a couple of seconds, so short runs stay quiet.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

SHOW_AFTER = 2.0


class Progress:
    """Counts work in steps (``reading``, ``applying``...); draws a bar when worth it."""

    def __init__(self, enabled: bool | None = None, show_after: float = SHOW_AFTER) -> None:
        if enabled is None:
            enabled = sys.stdout.isatty() and sys.stderr.isatty()
        self.enabled = enabled
        self.show_after = show_after
        self._bar: Any = None
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._started = 0.0

    def start(self, label: str, total: int | None = None) -> None:
        self.finish()
        self._label = label
        self._total = total
        self._done = 0
        self._started = time.monotonic()

    def advance(self, steps: int = 1) -> None:
        if not self.enabled:
            return
        self._done += steps
        if self._bar is None:
            # click needs a length: steps of unknown size (a read) draw no bar.
            if self._total is None or time.monotonic() - self._started < self.show_after:
                return
            self._bar = click.progressbar(length=self._total, label=self._label,
                                          file=sys.stderr, show_pos=True,
                                          update_min_steps=max(1, self._total // 1000))
            self._bar.__enter__()
            self._bar.update(self._done)
            return
        self._bar.update(steps)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class Silent(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False)
