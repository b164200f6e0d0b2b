"""A first sync's CPU per entry: dirsync's, slapd's, and ldapadd's for the same entries.

One command: ``.venv/bin/python benchmarks/firstsync_cpu.py --rows 20000 --nosync``
(``--checkout DIR`` runs another checkout's dirsync, with that checkout's
``.venv``, against the same generated export; ``--source ldap`` imports
people from a foreign slapd with generic-ldap instead of a CSV export; ``--profile FILE`` runs the
sync under cProfile; ``--rounds N`` repeats and reports each round).

On a machine shared with other work the wall clock moves a lot; the CPU a
process spent does not. So besides the wall time this reports:

- the dirsync process's own CPU (user + system, from wait4), per entry;
- the CPU slapd spent while the sync ran (``/proc/<pid>/stat``), per
  entry, and the share of the run's wall time it was busy: what is left
  is the time the run kept the server waiting;
- the same for ``ldapadd -f`` of exactly the entries the sync wrote (its
  report's change file), into a second fresh slapd of the same
  configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_rows, hub_config, write_csv

WORK = ROOT / "benchmarks" / "scratch" / "firstsync"
SUFFIX = "dc=example,dc=org"
BASE = f"ou=Bench,{SUFFIX}"
CONTAINER = f"ou=Import,{BASE}"
TICK = os.sysconf("SC_CLK_TCK")


def fresh_server(nosync: bool) -> SlapdServer:
    server = SlapdServer(suffix=SUFFIX, database_extra="dbnosync" if nosync else "").start()
    server.add_suffix()
    server.add_ou(BASE)
    return server


def cpu_of(pid: int) -> float:
    """A running process's CPU seconds so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def timed(cmd: list[str], server: SlapdServer, cwd: Path) -> dict[str, Any]:
    """Run ``cmd`` to its end: wall, its own CPU, the CPU ``server`` spent meanwhile."""
    assert server.pid is not None
    out_path, err_path = WORK / "stdout.txt", WORK / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        server_before = cpu_of(server.pid)
        started = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        server_cpu = cpu_of(server.pid) - server_before
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0,):
        raise RuntimeError(f"{cmd[:4]} failed ({process.returncode}): "
                           f"{err_path.read_text()[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime,
            "sys": usage.ru_stime, "server_cpu": server_cpu,
            "stdout": out_path.read_text(), "stderr": err_path.read_text()}


def ldap_source(rows: int) -> tuple[SlapdServer, Path]:
    """A foreign slapd holding ``rows`` people (as benchmarks/incremental_bench.py
    makes them), and a config that imports them with generic-ldap."""
    import incremental_bench as bench  # the benchmark's own source and config

    source = bench.server(syncprov=True)
    folder = WORK / "source"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bench.load(source, rows, folder)
    return source, folder


def one_round(args: argparse.Namespace, source: Path, rows: int) -> dict[str, Any]:
    checkout = Path(args.checkout).resolve()
    python = str(checkout / ".venv" / "bin" / "python")
    foreign: SlapdServer | None = None
    if args.source == "ldap":
        import incremental_bench as bench

        foreign, _ = ldap_source(rows)
        a = bench.server()
    else:
        a = fresh_server(args.nosync)
    b: SlapdServer | None = None
    folder = WORK / "run"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        if foreign is not None:
            config = bench.config(folder, a, foreign)
        else:
            config = hub_config(folder, a, CONTAINER, source, threshold=rows,
                                window=args.window)
        prefix = [*shlex.split(args.wrap), python]
        if args.profile:
            prefix += ["-m", "cProfile", "-o", str(Path(args.profile).resolve())]
        verbose = [] if args.quiet else ["-vv"]
        sync = timed([*prefix, "-m", "dirsync", *verbose, "-c", str(config), "--json", "sync"],
                     a, checkout)
        line = json.loads([ln for ln in sync["stdout"].splitlines() if ln.startswith("{")][-1])
        assert line["counts"]["add"] == rows, line["counts"]
        result: dict[str, Any] = {"sync": sync, "counts": line["counts"]}
        if not args.no_ldapadd and foreign is None:
            b = fresh_server(args.nosync)
            ldif = line["files"]["ldif"]
            result["ldapadd"] = timed(["ldapadd", "-x", "-H", b.url, "-D", b.root_dn, "-w",
                                       b.root_pw, "-f", ldif], b, ROOT)
        return result
    finally:
        a.destroy()
        for other in (b, foreign):
            if other is not None:
                other.destroy()


def describe(name: str, run: dict[str, Any], rows: int) -> str:
    per = 1e6 / rows
    return (f"{name}: wall {run['wall']:.2f} s, own CPU {run['cpu']:.2f} s "
            f"({run['cpu'] * per:.0f} us/entry; user {run['user']:.2f}, sys {run['sys']:.2f}), "
            f"slapd CPU {run['server_cpu']:.2f} s ({run['server_cpu'] * per:.0f} us/entry, "
            f"busy {100 * run['server_cpu'] / run['wall']:.0f}% of the wall time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--nosync", action="store_true",
                        help="give both servers mdb's dbnosync (no disk flush per write)")
    parser.add_argument("--checkout", default=str(ROOT),
                        help="the checkout whose dirsync runs (with its own .venv)")
    parser.add_argument("--profile", help="write a cProfile of the sync to this file")
    parser.add_argument("--source", choices=("csv", "ldap"), default="csv",
                        help="csv: csv-gal rows; ldap: people in a foreign slapd, "
                        "generic-ldap (as benchmarks/incremental_bench.py; dbnosync)")
    parser.add_argument("--window", type=int, default=None,
                        help="the hub's window of outstanding writes (default: dirsync's)")
    parser.add_argument("--wrap", default="",
                        help="a command to run the sync under (a sampling profiler)")
    parser.add_argument("--quiet", action="store_true",
                        help="run dirsync at its default verbosity (no -vv: no step times, "
                        "no log event per change)")
    parser.add_argument("--no-ldapadd", action="store_true", help="time dirsync only")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    source = write_csv(WORK / "gal.csv", gal_rows(args.rows))
    print(f"{args.rows} rows, checkout {args.checkout}, "
          f"{'dbnosync' if args.nosync else 'fsync'}", flush=True)
    for turn in range(args.rounds):
        result = one_round(args, source, args.rows)
        print(f"round {turn + 1}:", flush=True)
        print("  " + describe("dirsync sync", result["sync"], args.rows), flush=True)
        if "ldapadd" in result:
            print("  " + describe("ldapadd -f", result["ldapadd"], args.rows), flush=True)
            print(f"  ratio dirsync/ldapadd wall: "
                  f"{result['sync']['wall'] / result['ldapadd']['wall']:.2f}", flush=True)
        steps = [ln.split(": ", 1)[1] for ln in result["sync"]["stderr"].splitlines()
                 if " took " in ln]
        print("  steps: " + "; ".join(steps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
