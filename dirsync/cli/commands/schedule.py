"""``dirsync schedule``: run the configured schedules until stopped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from dirsync.config import load_config
from dirsync.errors import ConfigError
from dirsync.schedule.scheduler import RunOutcome, Scheduler
from dirsync.state.store import RunRecord
from dirsync.sync.pipeline import RunResult, SyncOptions
from dirsync.sync.run import run
from dirsync.sync.runlog import log_run_end

log = logging.getLogger("dirsync.schedule")


@click.command("schedule")
@click.option("--once", is_flag=True,
              help="Run every connection once and exit (for cron and systemd timers).")
@click.option("--metrics-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="Rewrite PATH with Prometheus metrics after each run.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), metavar="PORT",
              help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.pass_context
def schedule(ctx: click.Context, once: bool, metrics_file: str | None,
             metrics_port: int | None) -> int:
    """Run each connection on its `schedule` (cron, or an interval such as 15m)
    until SIGTERM or SIGINT, which let the changes in flight finish and end
    the run as interrupted (exit 0); a second signal stops at once.

    Never two runs of one connection at once, also across processes; ticks
    missed while a run was going are coalesced into one run; a failed run is
    logged and tried again at the next tick.
    """
    config = load_config(ctx.obj.config_path)
    as_json = ctx.obj.json
    by_name = {c.name: c for c in config.connections}
    schedules = {name: c.schedule for name, c in by_name.items() if c.schedule}
    if once:
        schedules = {name: c.schedule or "1d" for name, c in by_name.items()}
    if not schedules:
        raise ConfigError(["connections: no connection has a schedule (set schedule = "
                           "\"*/15 * * * *\" or \"15m\", or use --once)"],
                          path=str(ctx.obj.config_path))

    def run_one(name: str) -> list[RunOutcome]:
        def show(result: RunResult) -> None:
            if as_json:
                click.echo(json.dumps(result.as_json(), ensure_ascii=False))
            log_run_end(result)

        died: list[RunRecord] = []
        results = run(config, [name], SyncOptions(), on_result=show, on_died=died.append)
        # A run a dead process left going counts in the metrics as died.
        return [*(RunOutcome("died", r.mode, r.counts, r.direction) for r in died),
                *(RunOutcome(r.status, r.mode, r.counts.as_dict(), r.direction)
                  for r in results)]

    scheduler = Scheduler(schedules, run_one, config.state.parent,
                          metrics_file=Path(metrics_file) if metrics_file else None,
                          metrics_port=metrics_port)
    if once:
        return scheduler.run_once()
    return scheduler.serve(ready=lambda: log.info("scheduling %s", ", ".join(schedules)))
