"""Import and export speed: dirsync against ldapadd and ldapsearch.

Each measurement gets a fresh slapd with the same configuration (mdb,
the dirsync test schema set, no overlays), so the tools see identical
servers. Run: ``.venv/bin/python benchmarks/ldif_bench.py [--entries N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dirsync.testing.slapd import SlapdServer  # noqa: E402

SUFFIX = "dc=example,dc=org"


def generate(path: Path, count: int) -> None:
    """``count`` realistic inetOrgPerson entries under one ou, UTF-8 names included."""
    given = ["Ted", "Ann", "Jürgen", "Zoë", "Li", "María", "Olaf", "Søren", "Amélie", "Kenji"]
    sur = ["Bremer", "Smith", "Müller", "Ångström", "Chen", "García", "Berg", "Dupont"]
    with open(path, "w", encoding="utf-8") as out:
        out.write(f"dn: ou=People,{SUFFIX}\nobjectClass: organizationalUnit\nou: People\n\n")
        for i in range(count):
            g, s = given[i % len(given)], sur[(i // 7) % len(sur)]
            out.write(
                f"dn: uid=u{i:07d},ou=People,{SUFFIX}\n"
                "objectClass: inetOrgPerson\n"
                f"uid: u{i:07d}\ncn: {g} {s} {i}\nsn: {s}\ngivenName: {g}\n"
                f"mail: u{i:07d}@example.org\ntelephoneNumber: +1 555 {i % 10000:04d}\n"
                f"title: Engineer grade {i % 9}\n"
                f"description: Benchmark entry number {i} with a description long enough to "
                "be folded by LDIF writers at seventy-six columns\n\n")


def fresh_server(nosync: bool = False) -> SlapdServer:
    # nosync: mdb's dbnosync, so the server's disk flushes do not hide the
    # client's own speed (both tools always see the same configuration).
    server = SlapdServer(suffix=SUFFIX, database_extra="dbnosync" if nosync else "").start()
    server.add_suffix()
    return server


PEAK_RSS: dict[str, int] = {}  # tool -> largest resident set of one run, in KiB


def timed(cmd: list[str], stdout: object = subprocess.DEVNULL,
          env: dict[str, str] | None = None) -> float:
    """Wall time of one run; its peak memory is kept in PEAK_RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE,  # type: ignore[arg-type]
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    tool = "dirsync" if "dirsync" in cmd else cmd[0]
    PEAK_RSS[tool] = max(PEAK_RSS.get(tool, 0), usage.ru_maxrss)
    return elapsed


def count_entries(server: SlapdServer) -> int:
    out = subprocess.run(["ldapsearch", "-x", "-H", server.url, "-D", server.root_dn, "-w",
                          server.root_pw, "-b", f"ou=People,{SUFFIX}", "-LLL",
                          "-E", "pr=1000/noprompt", "1.1"], capture_output=True, text=True,
                         check=True).stdout
    return out.count("dn: ")


def bench_import(ldif: Path, entries: int, rounds: int,
                 nosync: bool) -> dict[str, list[float]]:
    env = dict(os.environ)
    times: dict[str, list[float]] = {"ldapadd": [], "dirsync": []}
    for _ in range(rounds):
        for tool in ("ldapadd", "dirsync"):
            server = fresh_server(nosync)
            try:
                if tool == "ldapadd":
                    cmd = ["ldapadd", "-x", "-H", server.url, "-D", server.root_dn, "-w",
                           server.root_pw, "-f", str(ldif)]
                else:
                    env["DIRSYNC_BIND_DN"], env["DIRSYNC_PASSWORD"] = server.root_dn, server.root_pw
                    cmd = [sys.executable, "-m", "dirsync", "import", server.url, str(ldif)]
                times[tool].append(timed(cmd, subprocess.DEVNULL, env))
                assert count_entries(server) == entries + 1, f"{tool} lost entries"
            finally:
                server.destroy()
    return times


def bench_export(ldif: Path, entries: int, rounds: int,
                 workdir: Path) -> dict[str, list[float]]:
    """Both tools write the whole tree to a file through stdout (neither
    syncs it to disk); ``dirsync -o`` (a temp file, fsync, rename) is timed
    too, as the safe way to write a file."""
    server = fresh_server(nosync=True)  # reads only: the flush setting does not matter
    times: dict[str, list[float]] = {"ldapsearch": [], "dirsync": [], "dirsync -o": []}
    try:
        env = dict(os.environ, DIRSYNC_BIND_DN=server.root_dn, DIRSYNC_PASSWORD=server.root_pw)
        subprocess.run([sys.executable, "-m", "dirsync", "import", server.url, str(ldif)],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert count_entries(server) == entries + 1
        url = server.url + "/" + SUFFIX
        for _ in range(rounds):
            with open(workdir / "ldapsearch.ldif", "w") as out:
                times["ldapsearch"].append(timed(
                    ["ldapsearch", "-x", "-H", server.url, "-D", server.root_dn, "-w",
                     server.root_pw, "-b", SUFFIX, "-LLL", "-E", "pr=1000/noprompt"], out))
            with open(workdir / "dirsync.ldif", "w") as out:
                times["dirsync"].append(timed(
                    [sys.executable, "-m", "dirsync", "export", url], out, env))
            times["dirsync -o"].append(timed(
                [sys.executable, "-m", "dirsync", "export", url, "-o",
                 str(workdir / "dirsync-o.ldif")], subprocess.DEVNULL, env))
        def records(name: str) -> int:
            text = (workdir / name).read_text(encoding="utf-8")
            return text.count("\ndn: ") + text.count("\ndn:: ") + text.startswith("dn")

        # The suffix, ou=People and the people, from every tool.
        assert records("ldapsearch.ldif") == records("dirsync.ldif") == entries + 2
    finally:
        server.destroy()
    return times


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    slapd = subprocess.run(["slapd", "-VV"], capture_output=True, text=True).stderr.split("\n")[0]
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {slapd.split('$')[1].strip() if '$' in slapd else slapd}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=20000, help="entries imported")
    parser.add_argument("--export-entries", default="20000,100000",
                        help="comma-separated directory sizes to export")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.export_entries.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="dsbench") as tmp:
        work = Path(tmp)
        ldif = work / "people.ldif"
        generate(ldif, args.entries)
        imports = {nosync: bench_import(ldif, args.entries, args.rounds, nosync)
                   for nosync in (False, True)}
        exports = {}
        for size in sizes:
            data = work / f"export-{size}.ldif"
            generate(data, size)
            exports[size] = bench_export(data, size, args.rounds, work)
    n = args.entries + 1
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}, load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"median of {args.rounds} rounds; a fresh slapd per import\n")
    print("| operation | entries | slapd mdb | tool | seconds | entries/s | "
          "dirsync's speed vs tool |")
    print("|---|---|---|---|---|---|---|")
    for nosync, label in ((False, "fsync (default)"), (True, "dbnosync")):
        theirs = statistics.median(imports[nosync]["ldapadd"])
        ours = statistics.median(imports[nosync]["dirsync"])
        print(f"| import | {n:,} | {label} | ldapadd | {theirs:.2f} | {n / theirs:,.0f} | |")
        print(f"| import | {n:,} | {label} | dirsync | {ours:.2f} | {n / ours:,.0f} | "
              f"{theirs / ours:.2f}x |")
    for size, times in exports.items():
        m = size + 2  # the suffix, ou=People and the people
        theirs = statistics.median(times["ldapsearch"])
        print(f"| export | {m:,} | dbnosync | ldapsearch | {theirs:.2f} | {m / theirs:,.0f} | |")
        for tool in ("dirsync", "dirsync -o"):
            ours = statistics.median(times[tool])
            print(f"| export | {m:,} | dbnosync | {tool} | {ours:.2f} | {m / ours:,.0f} | "
                  f"{theirs / ours:.2f}x |")
    print("\npeak resident memory of one run: " + ", ".join(
        f"{tool} {kib / 1024:.0f} MiB" for tool, kib in sorted(PEAK_RSS.items())))


if __name__ == "__main__":
    main()
