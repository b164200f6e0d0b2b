"""The one exception tree of dirsync, sorted by what the caller should do.

Every error dirsync raises on purpose derives from :class:`DirsyncError` and
carries the exit status the command line reports for it (PRODUCT.md):
2 for bad usage, config or input (nothing changed), 3 for a safety stop
(nothing changed), 1 for a run that finished with per-entry failures.
"""

from __future__ import annotations


class DirsyncError(Exception):
    """Root of every error dirsync raises on purpose."""

    exit_status = 2
    hint: str | None = None


class UsageError(DirsyncError):
    """The command line itself is wrong."""


class ConfigError(DirsyncError):
    """The configuration or a mapping is invalid; lists every problem found."""

    def __init__(self, problems: list[str] | str, path: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(self.problems))


class InputError(DirsyncError):
    """Malformed input data: names the file, the line and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.message}"
        if self.field:
            text += f" (field {self.field!r})"
        return text


class DirectoryError(DirsyncError):
    """A directory could not be read or written as a whole."""

    exit_status = 1


class TransientDirectoryError(DirectoryError):
    """The directory went away or timed out; the next run may succeed."""


class FatalDirectoryError(DirectoryError):
    """The directory refuses us for good (bad credentials, no such base, TLS)."""

    exit_status = 2


class EntryError(DirsyncError):
    """One entry failed; it is reported and skipped, the rest goes on."""

    exit_status = 1

    def __init__(self, dn: str, message: str, *, result: str | None = None,
                 line: int | None = None) -> None:
        self.dn = dn
        self.message = message
        self.result = result
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{dn}: {message}")


class SafetyStop(DirsyncError):
    """A safety limit stopped the run before anything was changed."""

    exit_status = 3
