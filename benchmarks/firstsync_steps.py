"""Where a first sync's client CPU goes, step by step, per entry.

One command: ``.venv/bin/python benchmarks/firstsync_steps.py --rows 20000``
(``-v`` to log one event per change, as ``dirsync -v sync`` does).

``dirsync sync`` runs in this process (a CSV export of csv-gal rows into a
fresh slapd with ``dbnosync``), with the functions of each step wrapped in
a timer that keeps the time of the functions it calls apart. On a machine
shared with other work a step's clock time includes the moments the
process waited for a core; that stretches every step alike, so each step
gets its share of the run's clock time applied to the CPU the process
spent (user + system) in the run. The timers cost about a microsecond per
wrapped call, charged to the steps themselves.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_rows, hub_config, write_csv

WORK = ROOT / "benchmarks" / "scratch" / "firstsync-steps"
SUFFIX = "dc=example,dc=org"
BASE = f"ou=Bench,{SUFFIX}"
CONTAINER = f"ou=Import,{BASE}"

_spent: dict[str, float] = defaultdict(float)
_stack: list[float] = []
_clock = time.perf_counter


def _charge(name: str, started: float) -> None:
    elapsed = _clock() - started
    inner = _stack.pop()
    _spent[name] += elapsed - inner
    if _stack:
        _stack[-1] += elapsed


def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = _clock()
        _stack.append(0.0)
        try:
            return func(*args, **kwargs)
        finally:
            _charge(name, started)
    return wrapper


def timed_iter(name: str, func: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        inner = func(*args, **kwargs)
        while True:
            started = _clock()
            _stack.append(0.0)
            try:
                item = next(inner)
            except StopIteration:
                return
            finally:
                _charge(name, started)
            yield item
    return wrapper


def instrument() -> None:
    from dirsync.addresses.values import Screen
    from dirsync.directories.csvfile import CSVDirectory
    from dirsync.directories.ldap import LDAPDirectory, Pipeline
    from dirsync.mapping.mapfile import Selected
    from dirsync.sync import changelog, importapply, importplan, importread
    from dirsync.sync.engine import ImportRun
    from dirsync.sync.ownership import AddressGuard
    from dirsync.sync.report import Report

    CSVDirectory._rows = timed_iter("read the CSV row", CSVDirectory._rows)  # type: ignore
    ImportRun.consider_mapped = timed(  # type: ignore[method-assign]
        "entry budget, template view, anchor, source hash", ImportRun.consider_mapped)
    Screen.problems = timed("check the source values", Screen.problems)  # type: ignore
    Selected.kind = timed("classify (templates)", Selected.kind)  # type: ignore
    Selected.map = timed("map (templates)", Selected.map)  # type: ignore
    importread.mapped_problems = timed("check the mapped addresses",
                                       importread.mapped_problems)
    AddressGuard.claim = timed("claim the addresses in this run",  # type: ignore
                               AddressGuard.claim)
    AddressGuard.check = timed("look up who holds the addresses (hub searches)",  # type: ignore
                               AddressGuard.check)
    importapply.candidate_dns = timed("place the DN", importapply.candidate_dns)
    importapply.place_dn = timed("place the DN", importapply.place_dn)
    importplan.target_entry = timed("build the hub entry", importplan.target_entry)
    ImportRun.new_item = timed("plan record", ImportRun.new_item)  # type: ignore
    LDAPDirectory._send = timed("LDAP add: send (python-ldap, BER)",  # type: ignore
                                LDAPDirectory._send)
    Pipeline._collect = timed("LDAP add: result", Pipeline._collect)  # type: ignore
    Report.ldif = timed("report: changes.ldif", Report.ldif)  # type: ignore
    Report.item = timed("report: report.json, .txt, .html", Report.item)  # type: ignore
    ImportRun.report_item = timed("report: report.json, .txt, .html",  # type: ignore
                                  ImportRun.report_item)
    ImportRun.record_state = timed("state rows (SQLite)", ImportRun.record_state)  # type: ignore
    changelog.log_result = timed("log event per change", changelog.log_result)
    ImportRun.stream_first_sync = timed("(the run)", ImportRun.stream_first_sync)  # type: ignore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log one event per change (dirsync -v)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the steps by this thread's CPU clock (a system call "
                        "per reading, so the timers cost more) or by the wall clock (its "
                        "share of the run applied to the run's CPU; a step that makes "
                        "system calls, as an LDAP send, is overstated on a busy machine)")
    args = parser.parse_args(argv)
    global _clock
    _clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    source = write_csv(WORK / "gal.csv", gal_rows(args.rows))
    server = SlapdServer(suffix=SUFFIX, database_extra="dbnosync").start()
    try:
        server.add_suffix()
        server.add_ou(BASE)
        config = hub_config(WORK, server, CONTAINER, source, threshold=args.rows)
        from dirsync.cli.main import main as dirsync

        instrument()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        before = usage.ru_utime + usage.ru_stime
        started = _clock()
        status = dirsync(["-c", str(config), *(["-v"] if args.verbose else []), "--json", "sync"])
        wall = _clock() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - before
    finally:
        server.destroy()
    assert status == 0, status
    run = _spent.pop("(the run)")
    inside = sum(_spent.values()) + run   # the run's own time is its exclusive part
    rest = wall - inside                  # start of the command, hub scan, state, report end
    per = 1e6 / args.rows
    scale = cpu / wall
    print(f"{args.rows} rows, dirsync{' -v' if args.verbose else ''} sync: CPU {cpu:.2f} s "
          f"({cpu * per:.0f} us/entry) in {wall:.2f} s")
    print("| step | us per entry |\n|---|---:|")
    for name, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds * scale * per:.1f} |")
    print(f"| the first sync's own loop (streaming, counts, pipeline bookkeeping) | "
          f"{run * scale * per:.1f} |")
    print(f"| outside the loop (start-up, hub scan, state and report at the end) | "
          f"{rest * scale * per:.1f} |")
    print(f"| **all** | **{cpu * per:.0f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
