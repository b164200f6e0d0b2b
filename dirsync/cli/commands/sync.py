"""``dirsync check``, ``plan``, ``sync`` and ``status``: thin layers over the engine."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from dirsync.checks.run import run_checks
from dirsync.config import ConnectionConfig, load_config
from dirsync.escapes import escape_controls
from dirsync.interrupt import exit_status as interrupt_status
from dirsync.interrupt import stop_requested, stopping_on_signals
from dirsync.state.runlife import reap
from dirsync.state.store import RunRecord, StateStore
from dirsync.sync.pipeline import RunResult, SyncOptions
from dirsync.sync.progress import Progress, Silent
from dirsync.sync.report import FILES, printable
from dirsync.sync.run import directions, run
from dirsync.wording import plural

#: At most this many lines of a text report are printed; the file has them all.
TEXT_LINES = 1000


def _exit_status(results: list[RunResult]) -> int:
    if stop_requested.is_set():
        # Ctrl-C or SIGTERM: the shell's convention, 130 or 143.
        return interrupt_status()
    if any(r.status == "stopped" for r in results):
        return 3
    if any(r.status != "ok" for r in results):
        return 1
    return 0


def _printer(ctx: Any, report_format: str) -> Any:
    def show(result: RunResult) -> None:
        if ctx.json:
            click.echo(json.dumps(result.as_json(), ensure_ascii=False))
            return
        path = result.files.get(report_format)
        if path is None:
            return
        limit = TEXT_LINES if report_format == "text" else None
        for line in printable(path, limit):
            click.echo(line, nl=False)
        if report_format == "text":
            click.echo("")
    return show


def _run(ctx: Any, names: tuple[str, ...], report_format: str,
         metrics_file: str | None = None, **options: Any) -> int:
    config = load_config(ctx.config_path)
    progress = Silent() if ctx.json else Progress()
    show = _printer(ctx, report_format)
    on_result = show
    on_died = None
    if metrics_file is not None:
        from dirsync.schedule.metrics import Metrics

        metrics = Metrics()

        def on_result(result: RunResult) -> None:
            show(result)
            # Rewritten after each run, so a scraper sees every finished run.
            duration = (datetime.fromisoformat(result.ended)
                        - datetime.fromisoformat(result.started)).total_seconds()
            metrics.record(connection=result.connection, direction=result.direction,
                           status=result.status, mode=result.mode,
                           counts=result.counts.as_dict(), duration=duration)
            metrics.write(Path(metrics_file))

        def on_died(record: RunRecord) -> None:
            metrics.record(connection=record.connection, direction=record.direction,
                           status="died", mode=record.mode, counts=record.counts,
                           duration=0.0)
            metrics.write(Path(metrics_file))

    with stopping_on_signals():
        results = run(config, names, SyncOptions(progress=progress, **options),
                      on_result=on_result, on_died=on_died)
    return _exit_status(results)


_FORMAT = click.option("--report-format", type=click.Choice(list(FILES)), default="text",
                       show_default=True, help="Which form of the report to print.")
_FULL = click.option("--full", is_flag=True,
                     help="A full reconcile: read the whole source, compare every entry and "
                          "rebuild the state from the hub (default: only what changed).")
_ALLOW = click.option("--allow-deletes", type=click.IntRange(min=0), metavar="N",
                      help="Approve up to N deletes, past the delete threshold or an empty "
                           "source.")


@click.command()
@click.pass_obj
def check(ctx: Any) -> int:
    """Validate the config and mappings, and reach every directory."""
    result = run_checks(ctx.config_path)
    if ctx.json:
        click.echo(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        for line in result.passed:
            click.echo(f"ok       {escape_controls(line)}")
        for line in result.notes:
            click.echo(f"note     {escape_controls(line)}")
        for line in result.problems:
            click.echo(f"problem  {escape_controls(line)}")
        click.echo(plural(len(result.problems), "problem") if result.problems else
                   "everything checked is in order")
    return 0 if result.ok else 2


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@_FULL
@_ALLOW
@_FORMAT
@click.pass_obj
def plan(ctx: Any, names: tuple[str, ...], full: bool, allow_deletes: int | None,
         report_format: str) -> int:
    """Compute the delta and write the report; change nothing."""
    return _run(ctx, names, report_format, dry_run=True, full=full,
                allow_deletes=allow_deletes)


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--dry-run", is_flag=True, help="Plan only: write the report, change nothing.")
@_FULL
@_ALLOW
@_FORMAT
@click.option("--metrics-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="Rewrite PATH with Prometheus metrics after each run.")
@click.pass_obj
def sync(ctx: Any, names: tuple[str, ...], dry_run: bool, full: bool,
         allow_deletes: int | None, report_format: str, metrics_file: str | None) -> int:
    """Bring the hub in step with the foreign directories (all, or those named).

    Ctrl-C (or SIGTERM) lets the changes in flight finish, records them and
    ends the run as interrupted (exit 130 or 143); a second one stops at once.
    """
    return _run(ctx, names, report_format, metrics_file=metrics_file, dry_run=dry_run,
                full=full, allow_deletes=allow_deletes)


@click.command()
@click.argument("name", required=False)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=5, show_default=True,
              help="Runs shown per connection.")
@click.pass_obj
def status(ctx: Any, name: str | None, limit: int) -> int:
    """The last runs of each connection (or of NAME): counts and outcome."""
    config = load_config(ctx.config_path)
    connections = config.select([name] if name else [])
    if not config.state.exists():
        if ctx.json:
            return 0
        click.echo(f"no runs yet (no state file {config.state})")
        return 0
    with StateStore(config.state) as state:
        for selected in connections:
            connection = selected.name
            # A run shown as going whose process is gone ends here as "died".
            reap(state, config.state.parent, connection)
            runs = state.runs(connection, limit)
            if ctx.json:
                for record in runs:
                    # Added beside the record's own fields: what the state holds now
                    # for this connection in the run's direction.
                    line = {**record.as_dict(),
                            "entries_in_state": state.count(connection, record.direction)}
                    click.echo(json.dumps(line, ensure_ascii=False))
                continue
            click.echo(f"{connection}: {_held(state, selected)}"
                       + ("" if runs else ", no runs yet"))
            for record in runs:
                duration = f"{record.duration:.2f}s" if record.duration is not None else "-"
                counts = " ".join(f"{k} {v}" for k, v in record.counts.items() if v)
                kind = "plan" if record.dry_run else "sync"
                click.echo(f"  #{record.id} {record.started} {duration:>8} {record.direction} "
                           f"{kind} {record.mode:<11} {record.outcome or 'running':<8} "
                           f"{counts or 'no changes'}")
                if record.message:
                    click.echo(f"      {escape_controls(record.message)}")
                if record.report:
                    click.echo(f"      report: {record.report}")
    sys.stdout.flush()
    return 0


def _held(state: StateStore, connection: ConnectionConfig) -> str:
    """What the state holds for ``connection`` in each direction it runs:
    "35 entries in the state (import)", "59 entries in the state (35 import,
    24 export)"."""
    held = {direction: state.count(connection.name, direction)
            for direction in directions(connection)}
    detail = (next(iter(held)) if len(held) == 1
              else ", ".join(f"{count} {direction}" for direction, count in held.items()))
    return f"{plural(sum(held.values()), 'entry')} in the state ({detail})"
