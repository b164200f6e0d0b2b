"""Change detection: does an incremental run cost what changed, not what exists?

One command::

    python benchmarks/incremental_bench.py [--sizes 10000,100000] [--rounds 3]
                                           [--directions import,export]

For each size, a foreign slapd (syncprov, a session log) is loaded with that
many inetOrgPerson entries (``ldapadd``, dbnosync), a first ``dirsync sync``
(generic-ldap mapping) copies them into a hub slapd, and then, per round,
100 changes are made in the source (50 modifies, 20 adds, 20 deletes, 10
renames) and ``dirsync sync`` runs once, incrementally. The export direction
is the same the other way round: the hub's ou=People (syncprov) is exported
into a partner's slapd, and the 100 changes are made in the hub. The figure is the
median over the rounds of the run's own duration (from its ``--json``
line: started to ended, after the config is loaded) and of the wall time of
the whole ``dirsync sync`` process. Targets: the 100,000-entry run at most
1.5 times the 10,000-entry run, and under 2 s. ``--record`` writes the
results into the ``## Change detection`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dirsync.testing.slapd import SlapdServer

SUFFIX = "o=Bench"
PEOPLE = f"ou=People,{SUFFIX}"
CONTAINER = f"ou=Import,{SUFFIX}"
CHANGES = {"modify": 50, "add": 20, "delete": 20, "rename": 10}


def server(**options: Any) -> SlapdServer:
    found = SlapdServer(suffix=SUFFIX, dbnosync=True, **options).start()
    found.add_suffix()
    found.add_ou(PEOPLE if options.get("syncprov") else CONTAINER)
    return found


def person(i: int, cn: str | None = None) -> str:
    uid = f"u{i:06d}"
    return (f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {cn or f'User {uid}'}\nsn: {uid}\nmail: {uid}@bench.example\n\n")


def load(source: SlapdServer, count: int, folder: Path) -> float:
    ldif = folder / "people.ldif"
    with open(ldif, "w", encoding="ascii") as stream:
        stream.writelines(person(i) for i in range(count))
    started = time.perf_counter()
    subprocess.run(["ldapadd", "-x", "-H", source.url, "-D", source.root_dn, "-w",
                    source.root_pw, "-f", str(ldif)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _write_config(folder: Path, directories: dict[str, tuple[SlapdServer, str]],
                  connection: str) -> Path:
    """A dirsync.toml with the given LDAP directories (name: server, base)."""
    some = next(iter(directories.values()))[0]
    (folder / "pw").write_text(some.root_pw + "\n")  # the test servers share one root password
    blocks = [f"""[directories.{name}]
kind = "ldap"
url = "{server.url}"
base = "{base}"
bind_dn = "{server.root_dn}"
password_file = "pw"
""" for name, (server, base) in directories.items()]
    path = folder / "dirsync.toml"
    path.write_text('state = "var/state.sqlite"\nreports = "var/reports"\n\n'
                    + "\n".join(blocks) + "\n[[connections]]\nname = \"bench\"\n"
                    + 'hub = "hub"\nmapping = "generic-ldap"\ndelete_threshold = "50%"\n'
                    + connection)
    return path


def config(folder: Path, hub: SlapdServer, source: SlapdServer) -> Path:
    """The source's ou=People imported into the hub."""
    return _write_config(folder, {"hub": (hub, SUFFIX), "source": (source, PEOPLE)},
                         f'foreign = "source"\nimport_container = "{CONTAINER}"\n')


def export_config(folder: Path, hub: SlapdServer, partner: SlapdServer) -> Path:
    """The hub's ou=People exported into a partner's LDAP directory."""
    return _write_config(folder, {"hub": (hub, SUFFIX), "partner": (partner, SUFFIX)},
                         f'foreign = "partner"\ndirection = "export"\n'
                         f'export_containers = ["{PEOPLE}"]\n'
                         f'foreign_container = "{CONTAINER}"\n')


def dirsync(path: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(path), "--json", "sync",
                           *args], check=False, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dirsync sync exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def make_changes(source: SlapdServer, count: int, round_: int, modify: str = "mail") -> None:
    """100 changes spread over the directory, none touching an entry twice.
    ``modify`` is the attribute the 50 modifies replace (one the mapping carries)."""
    conn = source.connect()
    step = count // (sum(CHANGES.values()) + 1)
    picks = iter(range(round_ + 1, count, step))
    for _ in range(CHANGES["modify"]):
        i = next(picks)
        value = (f"u{i:06d}.r{round_}@bench.example" if modify == "mail"
                 else f"Title {i} r{round_}")
        conn.modify_s(f"uid=u{i:06d},{PEOPLE}", [(ldap.MOD_REPLACE, modify, [value.encode()])])
    for n in range(CHANGES["add"]):
        dn, *lines = person(10_000_000 + round_ * 1000 + n).strip().splitlines()
        attrs: dict[str, list[bytes]] = {}
        for line in lines:
            key, value = line.split(": ", 1)
            attrs.setdefault(key, []).append(value.encode())
        conn.add_s(dn.split(": ", 1)[1], list(attrs.items()))
    for _ in range(CHANGES["delete"]):
        conn.delete_s(f"uid=u{next(picks):06d},{PEOPLE}")
    for _ in range(CHANGES["rename"]):
        i = next(picks)
        conn.modify_s(f"uid=u{i:06d},{PEOPLE}", [
            (ldap.MOD_REPLACE, "cn", [f"Renamed {i} r{round_}".encode()])])
    conn.unbind_s()


def duration(line: dict[str, Any]) -> float:
    return (datetime.fromisoformat(line["ended"])
            - datetime.fromisoformat(line["started"])).total_seconds()


def measure(count: int, rounds: int, direction: str = "import") -> dict[str, Any]:
    """Import: a foreign slapd's changes into the hub. Export: the hub's
    changes into a partner's slapd. The changed directory has syncprov."""
    folder = Path(tempfile.mkdtemp(prefix="dsinc"))
    changed = server(syncprov=True, sessionlog=10_000)
    other = server()
    try:
        loaded = load(changed, count, folder)
        path = (config(folder, other, changed) if direction == "import"
                else export_config(folder, changed, other))
        first, first_wall = dirsync(path)
        assert first["mode"] == "full" and first["counts"]["add"] == count, first
        runs, walls = [], []
        for round_ in range(rounds):
            # The export gives a partner the address it first generated for a
            # recipient (stable, as a recipient update service keeps it), so
            # its modifies change a title, which the mapping carries.
            make_changes(changed, count, round_, "mail" if direction == "import" else "title")
            line, wall = dirsync(path)
            counts = line["counts"]
            got = (counts["add"], counts["delete"], counts["modify"], counts["rename"])
            if direction == "import":
                expected = (CHANGES["add"], CHANGES["delete"], CHANGES["modify"],
                            CHANGES["rename"])
                ok = got == expected
            else:
                ok = got == (CHANGES["add"], CHANGES["delete"], CHANGES["modify"],
                             CHANGES["rename"])
            if line["mode"] != "incremental" or not ok:
                raise SystemExit(f"{direction} round {round_}: {line['mode']} run, "
                                 f"counts {counts}")
            runs.append(duration(line))
            walls.append(wall)
        return {"direction": direction, "entries": count, "load": loaded,
                "first_sync": first_wall, "run": statistics.median(runs),
                "wall": statistics.median(walls), "runs": runs, "walls": walls}
    finally:
        changed.destroy()
        other.destroy()


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    slapd = subprocess.run(["slapd", "-VV"], check=False, capture_output=True, text=True).stderr
    version = re.search(r"slapd ([\w.+~-]+)", slapd)
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.1f} GiB memory, Linux "
            f"{platform.release()}, Python {platform.python_version()}, OpenLDAP slapd "
            f"{version.group(1) if version else '?'} (mdb, dbnosync)")


def render(results: list[dict[str, Any]], rounds: int) -> str:
    lines = [
        (f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, load average "
        f"{os.getloadavg()[0]:.2f}."),
        "",
        "Command: `python benchmarks/incremental_bench.py --record`",
        "",
        (f"100 changes (50 modifies, 20 adds, 20 deletes, 10 renames by a new cn) in a "
        f"slapd with syncprov and a session log, then one incremental `dirsync sync` "
        f"(generic-ldap); median of {rounds} rounds. *Import*: the changes are made in "
        "the foreign directory and reach the hub. *Export*: they are made in the hub's "
        "export container (the modifies change a title there: a partner keeps the address "
        "first generated for a recipient) and reach a partner's directory. *run*: the run's own duration from its `--json` "
        "line; *wall*: the whole `dirsync sync` process, Python start-up included."),
        "",
        "| direction | entries | load (ldapadd) | first sync (full) | incremental run | wall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['direction']} | {r['entries']:,} | {r['load']:.1f} s | "
                     f"{r['first_sync']:.1f} s | {r['run']:.3f} s | {r['wall']:.2f} s |")
    lines.append("")
    for direction in ("import", "export"):
        mine = [r for r in results if r["direction"] == direction]
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        ratio = large["run"] / small["run"]
        lines.append(
            f"- {direction}: ratio {large['entries']:,} / {small['entries']:,}: run "
            f"{ratio:.2f} (target at most 1.5: {'met' if ratio <= 1.5 else 'missed'}), wall "
            f"{large['wall'] / small['wall']:.2f}; the {large['entries']:,}-entry run takes "
            f"{large['run']:.3f} s (target under 2 s: "
            f"{'met' if large['run'] < 2 else 'missed'}).")
    return "\n".join(lines)


def record(text: str) -> None:
    path = ROOT / "benchmarks" / "RESULTS.md"
    content = path.read_text()
    heading = "## Change detection"
    section = f"{heading}\n\n{text}\n"
    if heading in content:
        start = content.index(heading)
        end = content.find("\n## ", start + 1)
        content = content[:start] + section + (content[end + 1:] if end != -1 else "")
    else:
        content = content.rstrip("\n") + "\n\n" + section
    path.write_text(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--directions", default="import,export",
                        help="comma-separated: import, export")
    parser.add_argument("--record", action="store_true",
                        help="Write the results into benchmarks/RESULTS.md.")
    args = parser.parse_args(argv)
    results = []
    for direction in args.directions.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            result = measure(size, args.rounds, direction)
            print(json.dumps(result), flush=True)
            results.append(result)
    text = render(results, args.rounds)
    print(text)
    if args.record:
        record(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
