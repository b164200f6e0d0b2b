"""Import and export speed: dirsync against ldapadd and ldapsearch.

Each measurement gets a fresh slapd with the same configuration (mdb,
the dirsync test schema set, no overlays), so the tools see identical
servers. Run: ``.venv/bin/python benchmarks/ldif_bench.py [--entries N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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


def timed(cmd: list[str], stdout: object = subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.PIPE)  # type: ignore[arg-type]
    return time.perf_counter() - start


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
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=env)
                times[tool].append(time.perf_counter() - start)
                assert count_entries(server) == entries + 1, f"{tool} lost entries"
            finally:
                server.destroy()
    return times


def bench_export(ldif: Path, rounds: int, workdir: Path) -> dict[str, list[float]]:
    server = fresh_server()
    times: dict[str, list[float]] = {"ldapsearch": [], "dirsync": []}
    try:
        subprocess.run(["ldapadd", "-x", "-H", server.url, "-D", server.root_dn, "-w",
                        server.root_pw, "-f", str(ldif)], check=True,
                       stdout=subprocess.DEVNULL)
        env = dict(os.environ, DIRSYNC_BIND_DN=server.root_dn, DIRSYNC_PASSWORD=server.root_pw)
        for _ in range(rounds):
            with open(workdir / "ldapsearch.ldif", "w") as out:
                start = time.perf_counter()
                subprocess.run(["ldapsearch", "-x", "-H", server.url, "-D", server.root_dn,
                                "-w", server.root_pw, "-b", SUFFIX, "-LLL",
                                "-E", "pr=1000/noprompt"], check=True, stdout=out)
                times["ldapsearch"].append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dirsync", "export", server.url + "/" + SUFFIX,
                            "-o", str(workdir / "dirsync.ldif")], check=True, env=env,
                           stderr=subprocess.DEVNULL)
            times["dirsync"].append(time.perf_counter() - start)
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
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsbench") as tmp:
        work = Path(tmp)
        ldif = work / "people.ldif"
        generate(ldif, args.entries)
        imports = {nosync: bench_import(ldif, args.entries, args.rounds, nosync)
                   for nosync in (False, True)}
        exp = bench_export(ldif, args.rounds, work)
    n = args.entries + 1
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d')}")
    print(f"entries: {n} (median of {args.rounds} rounds, fresh slapd per import)\n")
    print("| operation | slapd mdb | tool | seconds | entries/s | dirsync's speed vs tool |")
    print("|---|---|---|---|---|---|")
    rows = [("import", "fsync (default)", "ldapadd", imports[False]),
            ("import", "dbnosync", "ldapadd", imports[True]),
            ("export", "fsync (default)", "ldapsearch", exp)]
    for op, config, tool, times in rows:
        theirs, ours = statistics.median(times[tool]), statistics.median(times["dirsync"])
        print(f"| {op} | {config} | {tool} | {theirs:.2f} | {n / theirs:,.0f} | |")
        print(f"| {op} | {config} | dirsync | {ours:.2f} | {n / ours:,.0f} | "
              f"{theirs / ours:.2f}x |")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\npeak RSS of any child process: {usage.ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
