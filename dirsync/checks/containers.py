"""``dirsync check`` on a container a run writes into: there, or made by the first run.

The check asks :func:`dirsync.sync.containers.container_adds`, the function the run
itself uses, so that check, plan and sync agree: what the run would create
is a note naming it, and a problem only what the run would fail on.
"""

from __future__ import annotations

from typing import Any

from dirsync.errors import ConfigError, DirsyncError
from dirsync.sync.containers import container_adds


def check_container(directory: Any, container: str, base: str | None, key: str, where: str,
                    what: str, run: str, result: Any) -> None:
    """A container exists, or the first run makes it (as the run itself decides)."""
    try:
        missing = container_adds(directory, container, base, key)
    except ConfigError as exc:
        result.problems.extend(exc.problems)
        return
    except DirsyncError as exc:
        result.problems.append(f"{where}: {exc}")
        return
    if not missing:
        result.passed.append(f"{where}: {what} {container} exists")
        return
    made = ", ".join(change.dn for change in missing)
    result.notes.append(f"{where}: the {what} {container} does not exist yet; the first "
                        f"{run} creates {made}")
