"""``dirsync sync`` and ``plan``: run connections, each in each of its directions.

The top of the sync package: it imports both directions and calls them, in
the order a connection's ``direction`` names them (``both`` is the import,
then the export). Each direction reads what changed since its cursors when
it can, and everything otherwise (:mod:`.cursor`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dirsync.config import Config, ConnectionConfig
from dirsync.interrupt import stop_requested
from dirsync.mapping.templatebudget import configure
from dirsync.state.locks import ConnectionLock
from dirsync.state.runlife import reap
from dirsync.state.store import RunRecord, StateStore
from dirsync.sync.engine import run_import
from dirsync.sync.exportrun import run_export
from dirsync.sync.pipeline import RunResult, SyncOptions

Runner = Callable[[Config, ConnectionConfig, StateStore, SyncOptions], RunResult]

#: How each direction of a connection runs.
DIRECTIONS: dict[str, Runner] = {
    "import": run_import,
    "export": run_export,
}


def directions(connection: ConnectionConfig) -> list[str]:
    if connection.direction == "both":
        return ["import", "export"]
    return [connection.direction]


def run(config: Config, names: Iterable[str] = (), options: SyncOptions | None = None,
        on_result: Callable[[RunResult], None] | None = None,
        on_died: Callable[[RunRecord], None] | None = None) -> list[RunResult]:
    """Run the named connections (all when none) in each of their directions.

    Each connection runs under its lock (:mod:`dirsync.state.locks`); its runs that
    a dead process left going are ended as ``died`` first (``on_died``). A
    stop on request (:mod:`dirsync.interrupt`) ends the run in flight as
    ``interrupted`` and starts no other.
    """
    opts = options or SyncOptions()
    configure(config.template_limits)
    connections = config.select(list(names))
    results: list[RunResult] = []
    with StateStore(config.state) as state:
        for connection in connections:
            if stop_requested.is_set():
                break
            # A plan changes nothing: plans may overlap each other, not a sync.
            with ConnectionLock(config.state.parent, connection.name, shared=opts.dry_run):
                if not opts.dry_run:
                    for record in reap(state, config.state.parent, connection.name,
                                       holding=True):
                        if on_died is not None:
                            on_died(record)
                for direction in directions(connection):
                    if stop_requested.is_set():
                        break
                    result = DIRECTIONS[direction](config, connection, state, opts)
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
    return results
