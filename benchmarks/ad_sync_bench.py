"""Syncing from Active Directory: a first import against ldapsearch, and
whether an incremental run costs what changed, not what exists.

One command::

    python benchmarks/ad_sync_bench.py [--sizes 1000,10000] [--rounds 3] [--record]

Starts a Samba AD DC (dirsync/testing/samba.py; it needs the ports 389 and
636 of 127.0.0.1: run it where no other DC runs, or in a network namespace
of its own) and a slapd hub. For each size, in increasing order, one OU of
the domain is filled up to that many mail-enabled, enabled users (added in
one sam.ldb transaction by ``SambaDC.bulk_add``, not timed), then:

- a first ``dirsync sync`` (a process, the ``ad`` mapping, ``lists =
  "contact"``) imports them into an empty container of the hub: a full read
  of AD, a DirSync cookie, the hub's adds; against it, ``ldapsearch -E
  pr=1000/noprompt`` reading the same objects and attributes from the DC
  over the same verified ldaps, into /dev/null;
- per round, 100 changes in AD (50 modifies of ``department``, 20 contacts
  added, 20 users deleted, 10 renamed by a new ``displayName``) and one
  incremental ``dirsync sync``, which reads them with DirSync.

The figures are the median over the rounds of the run's own duration (its
``--json`` line, started to ended) and of the process's wall time. Target:
the incremental run at the largest size at most 1.5 times the one at the
smallest. ``--record`` writes the results into the ``## Syncing from Active
Directory`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

from dirsync.directories.ad import MAIL_ENABLED, READ_ATTRIBUTES, RECIPIENT_CLASSES
from dirsync.testing.samba import SambaDC
from dirsync.testing.slapd import SlapdServer

SUFFIX = "o=Bench"
CHANGES = {"modify": 50, "add": 20, "delete": 20, "rename": 10}


def user(i: int, ou: str) -> tuple[str, dict[str, list[str]]]:
    name = f"User {i:06d}"
    return (f"CN={name},{ou}", {
        "objectClass": ["user"], "sAMAccountName": [f"bu{i:06d}"],
        "userAccountControl": ["544"],   # a normal account that needs no password
        "displayName": [name], "givenName": ["User"], "sn": [f"{i:06d}"],
        "mail": [f"u{i:06d}@corp.example"],
        "proxyAddresses": [f"SMTP:u{i:06d}@corp.example", f"smtp:user{i}@corp.example"],
        "department": ["Sales"], "telephoneNumber": [f"+1 555 {i:07d}"]})


def fill(dc: SambaDC, ou: str, start: int, stop: int) -> float:
    started = time.perf_counter()
    for low in range(start, stop, 5000):
        dc.bulk_add([user(i, ou) for i in range(low, min(stop, low + 5000))])
    return time.perf_counter() - started


def write_config(folder: Path, hub: SlapdServer, dc: SambaDC, ou: str, container: str) -> Path:
    (folder / "hub.pw").write_text(hub.root_pw + "\n")
    (folder / "ad.pw").write_text(dc.admin_password + "\n")
    path = folder / "dirsync.toml"
    path.write_text(f"""state = "var/state.sqlite"
reports = "var/reports"

[directories.hub]
kind = "ldap"
url = "{hub.url}"
base = "{SUFFIX}"
bind_dn = "{hub.root_dn}"
password_file = "hub.pw"

[directories.ad]
kind = "ad"
url = "{dc.url}"
base = "{ou}"
bind_dn = "{dc.admin_upn}"
password_file = "ad.pw"
ca_file = "{dc.ca_file}"

[[connections]]
name = "corp-ad"
foreign = "ad"
hub = "hub"
mapping = "ad"
import_container = "{container}"
lists = "contact"
delete_threshold = "50%"
""")
    return path


def dirsync(path: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(path), "--json", "sync",
                           *args], check=False, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dirsync sync exited {done.returncode}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def duration(line: dict[str, Any]) -> float:
    return (datetime.fromisoformat(line["ended"])
            - datetime.fromisoformat(line["started"])).total_seconds()


def ldapsearch(dc: SambaDC, ou: str) -> tuple[float, int]:
    env = {**os.environ, "LDAPTLS_CACERT": str(dc.ca_file)}
    command = ["ldapsearch", "-LLL", "-x", "-H", dc.url, "-D", dc.admin_upn, "-w",
               dc.admin_password, "-b", ou, "-E", "pr=1000/noprompt",
               f"(&{RECIPIENT_CLASSES}{MAIL_ENABLED})", *READ_ATTRIBUTES]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, env=env, check=True).stdout
    return time.perf_counter() - started, out.count(b"\ndn: ") + out.startswith(b"dn: ")


def make_changes(dc: SambaDC, ou: str, alive: list[int], round_: int, tag: str) -> None:
    """100 changes spread over the users, none touching one twice (``tag``
    makes the names and values of this round unique)."""
    conn = dc.connect()
    try:
        step = max(1, len(alive) // (sum(CHANGES.values()) + 1))
        picks = iter(alive[round_ + 1::step])
        for _ in range(CHANGES["modify"]):
            i = next(picks)
            conn.modify_s(f"CN=User {i:06d},{ou}",
                          [(ldap.MOD_REPLACE, "department", [f"Dept {tag}".encode()])])
        for n in range(CHANGES["add"]):
            name = f"Contact {tag} {n:02d}"
            conn.add_s(f"CN={name},{ou}", [
                ("objectClass", [b"contact"]), ("displayName", [name.encode()]),
                ("mail", [f"c{tag}.{n}@partner.example".encode()])])
        for _ in range(CHANGES["delete"]):
            i = next(picks)
            conn.delete_s(f"CN=User {i:06d},{ou}")
            alive.remove(i)
        for _ in range(CHANGES["rename"]):
            i = next(picks)
            conn.modify_s(f"CN=User {i:06d},{ou}", [
                (ldap.MOD_REPLACE, "displayName", [f"Renamed {i} {tag}".encode()])])
    finally:
        conn.unbind_s()


def measure(dc: SambaDC, hub: SlapdServer, ou: str, alive: list[int], size: int,
            rounds: int) -> dict[str, Any]:
    start = max(alive) + 1 if alive else 0
    loaded = fill(dc, ou, start, size) if start < size else 0.0
    alive.extend(range(start, size))
    folder = Path(tempfile.mkdtemp(prefix="dsadb"))
    container = f"ou=AD {size},{SUFFIX}"
    hub.add_ou(container)
    path = write_config(folder, hub, dc, ou, container)
    tool, count = ldapsearch(dc, ou)
    first, first_wall = dirsync(path)
    if first["mode"] != "full" or first["counts"]["add"] != count:
        raise SystemExit(f"first run: {first['mode']}, counts {first['counts']}, "
                         f"ldapsearch found {count}")
    tools = [tool] + [ldapsearch(dc, ou)[0] for _ in range(2)]
    runs, walls = [], []
    for round_ in range(rounds):
        make_changes(dc, ou, alive, round_, f"{size}.{round_}")
        line, wall = dirsync(path)
        counts = line["counts"]
        got = (counts["add"], counts["delete"], counts["modify"], counts["rename"])
        expected = (CHANGES["add"], CHANGES["delete"], CHANGES["modify"], CHANGES["rename"])
        if line["mode"] != "incremental" or got != expected:
            raise SystemExit(f"round {round_}: {line['mode']} run, counts {counts}")
        runs.append(duration(line))
        walls.append(wall)
    return {"objects": count, "load": loaded, "first_run": duration(first),
            "first_wall": first_wall, "ldapsearch": statistics.median(tools),
            "run": statistics.median(runs), "wall": statistics.median(walls),
            "runs": runs, "walls": walls}


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    samba = subprocess.run(["samba", "--version"], check=False, capture_output=True,
                           text=True).stdout.strip().replace("Version", "Samba")
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.1f} GiB memory, Linux "
            f"{platform.release()}, Python {platform.python_version()}, {samba or 'Samba'} "
            "as the DC, OpenLDAP slapd (mdb, dbnosync) as the hub")


def render(results: list[dict[str, Any]], rounds: int, uptime: list[str]) -> str:
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        "",
        "Load (`uptime`), before and after: " + "; ".join(f"`{u}`" for u in uptime) + ". "
        "The machine was shared with other work: the figures are slower than on an idle "
        "machine, the ratios less so.",
        "",
        "Command: `python benchmarks/ad_sync_bench.py --record`",
        "",
        ("Enabled, mail-enabled AD users (two SMTP addresses, a phone, a department) below "
         "one OU, imported by `dirsync sync` (mapping `ad`, `lists = \"contact\"`) into an "
         "empty hub container. *first run*: the first, full run (its `--json` duration: "
         "the read of AD, a DirSync cookie, the hub's adds); *ldapsearch*: `ldapsearch -E "
         "pr=1000/noprompt` reading the same objects and attributes from the DC over the "
         "same ldaps, median of 3. Then per round 100 changes in AD (50 modifies, 20 "
         f"contacts added, 20 users deleted, 10 renamed) and one incremental run, which "
         f"reads them with DirSync; median of {rounds} rounds. *wall*: the whole process, "
         "Python start-up included."),
        "",
        ("| objects | first run | first run wall | ldapsearch | first run / ldapsearch "
        "| incremental run (100 changes) | wall |"),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['objects']:,} | {r['first_run']:.2f} s | {r['first_wall']:.2f} s "
                     f"| {r['ldapsearch']:.2f} s | {r['first_run'] / r['ldapsearch']:.1f} "
                     f"| {r['run']:.3f} s | {r['wall']:.2f} s |")
    if len(results) >= 2:
        small, large = results[0], results[-1]
        ratio = large["run"] / small["run"]
        lines += ["", (f"- Incremental run, {large['objects']:,} / {small['objects']:,} "
                  f"objects: ratio {ratio:.2f} (target at most 1.5: "
                  f"{'met' if ratio <= 1.5 else 'missed'}); wall "
                  f"{large['wall'] / small['wall']:.2f}.")]
    return "\n".join(lines)


def record(text: str) -> None:
    path = ROOT / "benchmarks" / "RESULTS.md"
    content = path.read_text()
    heading = "## Syncing from Active Directory"
    section = f"{heading}\n\n{text}\n"
    if heading in content:
        start = content.index(heading)
        end = content.find("\n## ", start + 1)
        content = content[:start] + section + (content[end + 1:] if end != -1 else "")
    else:
        anchor = content.find("\n## ", content.index("## Reading Active Directory") + 1)
        content = (content[:anchor + 1] + section + "\n" + content[anchor + 1:]
                   if anchor != -1 else content.rstrip("\n") + "\n\n" + section)
    path.write_text(content)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True,
                          check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true",
                        help="Write the results into benchmarks/RESULTS.md.")
    args = parser.parse_args(argv)
    loads = [uptime()]
    dc = SambaDC().start()
    hub = SlapdServer(suffix=SUFFIX, dbnosync=True).start()
    hub.add_suffix()
    results = []
    try:
        ou = dc.add_ou("Bench")
        alive: list[int] = []
        for size in sorted(int(s) for s in args.sizes.split(",")):
            result = measure(dc, hub, ou, alive, size, args.rounds)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        hub.destroy()
        dc.destroy()
    loads.append(uptime())
    text = render(results, args.rounds, loads)
    print(text)
    if args.record:
        record(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
