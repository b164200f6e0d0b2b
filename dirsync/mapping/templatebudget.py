"""The budgets of mapping templates: the limits, and what is left of them.

:class:`TemplateLimits` are the configured limits (``[template_limits]``,
docs/mapping.md "Limits"). While one source entry is mapped, a budget of
its own is in force on this thread (:class:`RunBudget` gives each entry
its share of the run's time); :mod:`dirsync.mapping.templatelimits` checks the
work of a template against it.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

#: The smallest size limits may be: anything this small passes unchecked.
MIN_SIZE = 256


@dataclass(frozen=True)
class TemplateLimits:
    """The budgets (docs/mapping.md, "Limits"); ``[template_limits]`` in the config."""

    entry_seconds: float = 2.0
    run_seconds: float = 3600.0
    value_chars: int = 65536
    list_items: int = 1000000
    entry_chars: int = 1048576
    depth: int = 50
    range_items: int = 10000


DEFAULT_LIMITS = TemplateLimits()


class LimitExceeded(Exception):
    """A template went past one of its limits (the message says which)."""


def parse_limits(table: Any, where: str = "template_limits") -> tuple[TemplateLimits, list[str]]:
    """The limits of a config table, and its problems (each ``where.key: ...``)."""
    if table is None:
        return DEFAULT_LIMITS, []
    if not isinstance(table, dict):
        return DEFAULT_LIMITS, [f"{where}: must be a table"]
    known = {f.name: f for f in fields(TemplateLimits)}
    values: dict[str, Any] = {}
    problems = []
    for key, value in table.items():
        spec = known.get(key)
        if spec is None:
            problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
            continue
        seconds = key.endswith("_seconds")
        least = MIN_SIZE if key in ("value_chars", "list_items", "entry_chars") else 1
        if isinstance(value, bool) or not isinstance(value, (int, float) if seconds else int):
            problems.append(f"{where}.{key}: must be a {'number' if seconds else 'whole number'}")
        elif seconds and value <= 0:
            problems.append(f"{where}.{key}: must be more than 0")
        elif not seconds and value < least:
            problems.append(f"{where}.{key}: must be at least {least}")
        else:
            values[key] = float(value) if seconds else value
    return TemplateLimits(**values), problems


# -- the time the garbage collector takes --------------------------------------

#: Seconds this process has spent in the cyclic garbage collector, and when the
#: collection under way started. A template is not charged for them: a full
#: collection of a large run's objects can take seconds, and would fail
#: whichever entry it interrupted.
_collecting = [0.0, 0.0]


def _gc_clock(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _collecting[1] = time.monotonic()
    else:
        _collecting[0] += time.monotonic() - _collecting[1]


gc.callbacks.append(_gc_clock)


# -- the budget of the entry being mapped -------------------------------------

class _Scope:
    """What is left of one entry's budget."""

    __slots__ = ("chars_left", "collected", "deadline", "depth", "limits", "timeout")

    def __init__(self, limits: TemplateLimits, seconds: float, timeout: str) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + seconds
        self.collected = _collecting[0]
        self.chars_left = limits.entry_chars
        self.depth = 0
        self.timeout = timeout

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            # The deadline moves by the garbage collector's pauses since the start.
            self.deadline += _collecting[0] - self.collected
            self.collected = _collecting[0]
            if time.monotonic() > self.deadline:
                raise LimitExceeded(self.timeout)

    def spend(self, chars: int) -> None:
        self.chars_left -= chars
        if self.chars_left < 0:
            raise LimitExceeded(f"renders more than {self.limits.entry_chars} characters for "
                                "one entry (template_limits.entry_chars)")


_local = threading.local()
_configured: list[TemplateLimits] = [DEFAULT_LIMITS]


def configure(limits: TemplateLimits) -> None:
    """The limits of renders outside a run's budget (``dirsync check``, tools)."""
    _configured[0] = limits


def _entry_timeout(seconds: float) -> str:
    return (f"took more than {seconds:g}s for one entry (template_limits.entry_seconds); "
            "stopped")


def tick() -> None:
    """The time check of the entry being mapped (none outside one)."""
    found: _Scope | None = getattr(_local, "scope", None)
    if found is not None and time.monotonic() > found.deadline:
        found.tick()


def active() -> _Scope | None:
    """The budget of the entry being mapped, if any."""
    found: _Scope | None = getattr(_local, "scope", None)
    return found


def scope() -> _Scope:
    """The budget in force: the entry's, or a fresh one for a lone check."""
    found: _Scope | None = getattr(_local, "scope", None)
    if found is None:
        limits = _configured[0]
        found = _Scope(limits, limits.entry_seconds, _entry_timeout(limits.entry_seconds))
    return found


class LoneRender:
    """A budget of its own for a render outside an entry's (``with``)."""

    def __enter__(self) -> _Scope:
        self.scope = scope()
        _local.scope = self.scope
        return self.scope

    def __exit__(self, *exc: object) -> None:
        _local.scope = None


class RunBudget:
    """The budget of one run: each entry gets its share of what is left.

    ``with budget.entry():`` around the mapping of one entry (a plain class,
    not a generator: it runs once per source entry).
    """

    def __init__(self, limits: TemplateLimits | None = None) -> None:
        self.limits = limits or _configured[0]
        self.spent = 0.0
        self._started = 0.0
        self._nested = False
        self._timeout = _entry_timeout(self.limits.entry_seconds)  # made once, not per entry

    def entry(self) -> RunBudget:
        return self

    def __enter__(self) -> None:
        self._nested = getattr(_local, "scope", None) is not None
        if self._nested:
            return
        limits = self.limits
        left = limits.run_seconds - self.spent
        if left < limits.entry_seconds:
            own = _Scope(limits, max(left, 0.0),
                         f"the run's template time budget of {limits.run_seconds:g}s "
                         "(template_limits.run_seconds) is spent; not mapped")
        else:
            own = _Scope(limits, limits.entry_seconds, self._timeout)
        self._started = time.monotonic()
        _local.scope = own

    def __exit__(self, *exc: object) -> None:
        if not self._nested:
            _local.scope = None
            self.spent += time.monotonic() - self._started
