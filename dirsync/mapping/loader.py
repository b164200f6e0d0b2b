"""The loader of a mapping file: typed reads of its tables, each problem with file, line and key.

Both halves of a mapping read their tables through it (:mod:`.mapfile` the
import half, :mod:`.exportmap` the ``[export]`` half); every problem is
collected, so that one error lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dirsync.mapping.templates import Expression, Template, TemplateError


class Loader:
    def __init__(self, path: Path, lines: dict[str, int], overrides: dict[str, str]) -> None:
        self.path = path
        self.lines = lines
        self.overrides = overrides
        self.problems: list[str] = []
        self.variables: dict[str, str] = {}

    def line(self, key: str) -> int | None:
        probe = key
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        return None

    def problem(self, key: str, message: str, line: int | None = None) -> None:
        line = line or self.line(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        problem = f"{where}: {key}: {message}"
        if problem not in self.problems:   # the [person] part is read once per person type
            self.problems.append(problem)

    def table(self, data: dict[str, Any], key: str, allowed: set[str] | None = None,
              required: bool = False) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(key, "missing")
            return {}
        if not isinstance(value, dict):
            self.problem(key, "must be a table")
            return {}
        if allowed is not None:
            for name in value:
                if name not in allowed:
                    self.problem(f"{key}.{name}",
                                 f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def string(self, data: dict[str, Any], key: str, where: str,
               required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(f"{where}.{key}", "missing")
            return None
        if not isinstance(value, str):
            self.problem(f"{where}.{key}", f"must be a string, not {value!r}")
            return None
        return value

    def strings(self, data: dict[str, Any], key: str, where: str) -> list[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(f"{where}.{key}", "must be a list of strings")
            return []
        return list(value)

    def template(self, source: str, key: str) -> Template | None:
        try:
            return Template(key, source, self.line(key), self.variables)
        except TemplateError as exc:
            self.problem(key, exc.message, exc.line)
            return None

    def expression(self, source: str, key: str) -> Expression | None:
        try:
            return Expression(key, source, self.line(key), self.variables)
        except TemplateError as exc:
            self.problem(key, exc.message, exc.line)
            return None
