"""Export at scale: a hub of N entries exported to an LDIF file and to a partner slapd.

One command::

    .venv/bin/python benchmarks/export_bench.py [--entries 100000] [--rounds 3]
                                                [--targets ldap,ldif] [--record]

1. A hub slapd (mdb, ``dbnosync``, syncprov with a session log) is loaded
   with N inetOrgPerson entries under ``ou=People`` by ``slapadd`` before it
   starts (the fastest way to a large directory).
2. ``ldapsearch`` of the hub's ``ou=People`` into a file: the reference for
   the export to an LDIF file.
3. For each target (a partner slapd with ``dbnosync``; an LDIF file), its own
   configuration and state: the first export (a full run), then ``--rounds``
   no-ops (incremental: nothing changed in the hub), each its own
   ``python -m dirsync sync`` process. The first export to a partner slapd is
   compared with ``ldapadd -f`` of exactly the entries it added (its report's
   change file) into another fresh slapd of the same configuration.
4. ``--rounds`` times a 1% change in the hub (N/100 modifies of a title,
   N/1000 adds, N/1000 deletes, by ``ldapmodify``, not timed), then an export
   to each target.
5. The ``ldapadd -f`` reference, last (each figure is printed as it is made).

Each figure is the wall time of the whole dirsync process and its peak
resident memory (VmHWM, polled, and the peaks dirsync logs after each
step with ``-vv``); no-ops and changes are medians. ``--record`` writes the
``### Export at scale`` subsection of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sync_bench import PeakMemory, machine

from dirsync.testing.slapd import SlapdServer

WORK = ROOT / "benchmarks" / "scratch" / "export"
SUFFIX = "o=Bench"
PEOPLE = f"ou=People,{SUFFIX}"
PARTNER = f"ou=Partner,{SUFFIX}"


def person(i: int, title: str = "Engineer") -> str:
    uid = f"u{i:07d}"
    return (f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: User {uid}\nsn: {uid}\ngivenName: User\nmail: {uid}@bench.example\n"
            f"title: {title}\ntelephoneNumber: +1 555 {i:07d}\n\n")


def hub_server(count: int) -> tuple[SlapdServer, float]:
    """A hub loaded with ``count`` people by slapadd before it starts."""
    server = SlapdServer(suffix=SUFFIX, dbnosync=True, syncprov=True,
                         sessionlog=max(count // 10, 1000))
    ldif = WORK / "hub.ldif"
    with open(ldif, "w", encoding="ascii") as stream:
        stream.write(f"dn: {SUFFIX}\nobjectClass: organization\no: Bench\n\n"
                     f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: People\n\n")
        stream.writelines(person(i) for i in range(count))
    conf = server.workdir / "slapd.conf"
    conf.write_text(server.config_text())
    started = time.perf_counter()
    subprocess.run(["slapadd", "-q", "-f", str(conf), "-l", str(ldif)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    loaded = time.perf_counter() - started
    ldif.unlink()
    return server.start(), loaded


def partner_server() -> SlapdServer:
    server = SlapdServer(suffix=SUFFIX, dbnosync=True).start()
    server.add_suffix()
    return server


def write_config(folder: Path, hub: SlapdServer, target: str,
                 partner: SlapdServer | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pw").write_text(hub.root_pw + "\n")
    if target == "ldap":
        assert partner is not None
        foreign = (f'kind = "ldap"\nurl = "{partner.url}"\nbase = "{SUFFIX}"\n'
                   f'bind_dn = "{partner.root_dn}"\npassword_file = "pw"\n')
    else:
        foreign = f'kind = "ldif"\npath = "partner.ldif"\nbase = "{SUFFIX}"\n'
    path = folder / "dirsync.toml"
    path.write_text(
        'state = "var/state.sqlite"\nreports = "var/reports"\n\n'
        f'[directories.hub]\nkind = "ldap"\nurl = "{hub.url}"\nbase = "{SUFFIX}"\n'
        f'bind_dn = "{hub.root_dn}"\npassword_file = "pw"\n\n'
        f"[directories.partner]\n{foreign}\n"
        '[[connections]]\nname = "bench"\nhub = "hub"\nforeign = "partner"\n'
        'mapping = "generic-ldap"\ndirection = "export"\ndelete_threshold = "50%"\n'
        f'export_containers = ["{PEOPLE}"]\nforeign_container = "{PARTNER}"\n')
    return path


def dirsync(config: Path) -> dict[str, Any]:
    """One ``python -m dirsync sync``: wall time, peak memory, its JSON line, step times."""
    out_path, err_path = config.parent / "stdout.txt", config.parent / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "dirsync", "-vv", "-c", str(config),
                                    "--json", "sync"], stdout=out, stderr=err, cwd=ROOT)
        peak = PeakMemory(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        peak.stop()
    log = err_path.read_text()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"dirsync failed ({process.returncode}): {log[-2000:]}")
    # Exit 1: done, some entries failed (counted as errors, shown in the table).
    line = json.loads(out_path.read_text().strip().splitlines()[-1])
    # Each step's time and the peak memory when it ended: "plan 30.7 s, 180 MB".
    steps = {name: f"{float(took):.2f} s, {float(mb):.0f} MB" for name, took, mb in re.findall(
        r": (\w[\w ]*?) took ([\d.]+)s \(peak memory so far ([\d.]+) MB", log)}
    logged = [float(m) for m in re.findall(r"peak memory so far ([\d.]+) MB", log)]
    return {"seconds": elapsed, "rss": max([peak.mb, *logged]), "line": line,
            "steps": steps, "cpu": usage.ru_utime + usage.ru_stime,
            "user": usage.ru_utime, "system": usage.ru_stime}


def timed(cmd: list[str], stdout: Any = subprocess.DEVNULL) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def ldapsearch_to_file(hub: SlapdServer, path: Path) -> float:
    with open(path, "wb") as out:
        return timed(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", hub.url,
                      "-D", hub.root_dn, "-w", hub.root_pw, "-b", PEOPLE], stdout=out)


def ldapadd(server: SlapdServer, ldif: Path) -> float:
    return timed(["ldapadd", "-x", "-H", server.url, "-D", server.root_dn, "-w",
                  server.root_pw, "-f", str(ldif)])


def change_hub(hub: SlapdServer, count: int, round_: int) -> dict[str, int]:
    """A 1% change: count/100 titles modified, count/1000 people added and deleted."""
    modifies, others = max(count // 100, 1), max(count // 1000, 1)
    step = count // (modifies + others + 1)
    picks = iter(range(round_ + 1, count, step))
    lines = []
    for _ in range(modifies):
        lines.append(f"dn: uid=u{next(picks):07d},{PEOPLE}\nchangetype: modify\n"
                     f"replace: title\ntitle: Manager r{round_}\n-\n\n")
    for _ in range(others):
        lines.append(f"dn: uid=u{next(picks):07d},{PEOPLE}\nchangetype: delete\n\n")
    for n in range(others):
        lines.append(person(10_000_000 + round_ * 100_000 + n).replace(
            "\nobjectClass", "\nchangetype: add\nobjectClass", 1))
    path = WORK / "change.ldif"
    path.write_text("".join(lines), encoding="ascii")
    subprocess.run(["ldapmodify", "-x", "-H", hub.url, "-D", hub.root_dn, "-w", hub.root_pw,
                    "-f", str(path)], check=True, stdout=subprocess.DEVNULL)
    return {"modify": modifies, "add": others, "delete": others}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def show(label: str, run: dict[str, Any]) -> None:
    counts = {k: v for k, v in run["line"]["counts"].items() if v}
    print(f"{label}: {run['seconds']:.2f} s, CPU {run['cpu']:.2f} s (user {run['user']:.2f}, "
          f"system {run['system']:.2f}), {run['rss']:.0f} MB, "
          f"{run['line']['mode']}, "
          f"{counts}, {run['steps']}", flush=True)


def measure(count: int, rounds: int, targets: list[str]) -> dict[str, Any]:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    servers: list[SlapdServer] = []
    try:
        hub, slapadd = hub_server(count)
        servers.append(hub)
        print(f"hub: {count:,} entries by slapadd in {slapadd:.1f} s", flush=True)
        result: dict[str, Any] = {"entries": count, "slapadd": slapadd, "targets": {}}
        result["ldapsearch"] = ldapsearch_to_file(hub, WORK / "ldapsearch.ldif")
        print(f"ldapsearch of the hub to a file: {result['ldapsearch']:.2f} s", flush=True)
        configs = {}
        for target in targets:
            partner = partner_server() if target == "ldap" else None
            if partner is not None:
                servers.append(partner)
            configs[target] = write_config(WORK / target, hub, target, partner)
        for target, config in configs.items():
            first = dirsync(config)
            show(f"{target}: first export", first)
            counts = first["line"]["counts"]
            assert counts["add"] + counts["error"] == count, counts
            mine: dict[str, Any] = {"first": first, "noops": [], "changes": []}
            for _ in range(rounds):
                run = dirsync(config)
                show(f"{target}: no-op", run)
                changed = {k: v for k, v in run["line"]["counts"].items()
                           if k in ("add", "modify", "delete", "rename") and v}
                # (Entries that failed are tried again, by the first no-op.)
                assert not changed or counts["error"], changed
                mine["noops"].append(run)
            result["targets"][target] = mine
        for round_ in range(rounds):
            made = change_hub(hub, count, round_)
            for target, config in configs.items():
                run = dirsync(config)
                show(f"{target}: 1% change", run)
                got = {k: run["line"]["counts"][k] for k in made}
                if run["line"]["counts"]["error"] == 0:
                    assert got == made, (got, made)
                result["targets"][target]["changes"].append(run)
        if "ldap" in result["targets"]:
            # Last, so that a long run has shown dirsync's own figures first.
            mine = result["targets"]["ldap"]
            reference = partner_server()
            servers.append(reference)
            mine["ldapadd"] = ldapadd(reference, Path(mine["first"]["line"]["files"]["ldif"]))
            print(f"ldapadd -f of the entries the first export added: {mine['ldapadd']:.1f} s",
                  flush=True)
        return result
    finally:
        for server in servers:
            server.destroy()


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one size: seconds and MB per target and run."""
    out: dict[str, Any] = {"entries": result["entries"], "slapadd": result["slapadd"],
                           "ldapsearch": result["ldapsearch"]}
    for target, mine in result["targets"].items():
        noop, change = median_run(mine["noops"]), median_run(mine["changes"])
        out[target] = {
            "first": mine["first"]["seconds"], "first_rss": mine["first"]["rss"],
            "errors": sum(r["line"]["counts"]["error"]
                          for r in [mine["first"], *mine["noops"], *mine["changes"]]),
            "first_steps": mine["first"]["steps"],
            "noops": [r["seconds"] for r in mine["noops"]], "noop": noop["seconds"],
            "noop_rss": max(r["rss"] for r in mine["noops"]),
            "changes": [r["seconds"] for r in mine["changes"]], "change": change["seconds"],
            "change_rss": max(r["rss"] for r in mine["changes"]),
            "change_steps": change["steps"], "ldapadd": mine.get("ldapadd")}
    return out


def render(figures: dict[str, Any], load: tuple[str, str]) -> str:
    n = figures["entries"]
    lines = [
        f"Command: `.venv/bin/python benchmarks/export_bench.py --entries {n}`",
        "",
        (f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {machine()}. "
         f"Load (`uptime`) before: {load[0]}; after: {load[1]}."),
        "",
        (f"A hub of {n:,} inetOrgPerson entries (slapadd, {figures['slapadd']:.1f} s) "
         "exported with the generic-ldap mapping; each run its own process."),
        "",
        "| target | run | dirsync | reference | peak memory (VmHWM) |",
        "|---|---|---:|---|---:|",
    ]
    for target, name in (("ldap", "partner slapd"), ("ldif", "LDIF file")):
        if target not in figures:
            continue
        f = figures[target]
        if target == "ldap":
            ref = f"`ldapadd -f` of the same entries: {f['ldapadd']:.1f} s " \
                  f"({f['first'] / f['ldapadd']:.2f}x)"
        else:
            ref = f"`ldapsearch` of the hub to a file: {figures['ldapsearch']:.1f} s"
        noops = ", ".join(f"{s:.2f}" for s in f["noops"])
        changes = ", ".join(f"{s:.2f}" for s in f["changes"])
        lines += [
            f"| {name} | first export | {f['first']:.1f} s | {ref} | {f['first_rss']:.0f} MB |",
            (f"| {name} | no-op (median of {noops} s) | {f['noop']:.2f} s | | "
             f"{f['noop_rss']:.0f} MB |"),
            (f"| {name} | 1% change (median of {changes} s) | {f['change']:.2f} s | | "
             f"{f['change_rss']:.0f} MB |"),
        ]
    for target in ("ldap", "ldif"):
        if target in figures and figures[target]["errors"]:
            lines += ["", (f"**{target}: {figures[target]['errors']} entries failed** over "
                           "the runs (see the reports).")]
    for target in ("ldap", "ldif"):
        if target in figures:
            f = figures[target]
            steps = "; ".join(f"{k} {v}" for k, v in f["first_steps"].items())
            lines += ["", (f"First export to {target}, dirsync's own step times and the peak "
                           f"memory at each step's end: {steps}.")]
    return "\n".join(lines) + "\n"


def record(text: str) -> None:
    path = ROOT / "benchmarks" / "RESULTS.md"
    content = path.read_text()
    heading = "### Export at scale"
    section = f"{heading}\n\n{text}\n"
    if heading in content:
        start = content.index(heading)
        end = min((i for i in (content.find("\n## ", start + 1),
                               content.find("\n### ", start + 1)) if i != -1),
                  default=-1)
        content = content[:start] + section + (content[end + 1:] if end != -1 else "")
    else:
        content = content.rstrip("\n") + "\n\n" + section
    path.write_text(content)


def uptime() -> str:
    return subprocess.run(["uptime"], check=False, capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--targets", default="ldap,ldif", help="comma-separated: ldap, ldif")
    parser.add_argument("--record", action="store_true",
                        help="write the results into benchmarks/RESULTS.md")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="the folder for the hub's LDIF, configurations and state "
                             "(emptied first; one per benchmark running at once; default "
                             "benchmarks/scratch/export)")
    args = parser.parse_args(argv)
    global WORK
    if args.scratch is not None:
        WORK = args.scratch.resolve()
    before = uptime()
    result = measure(args.entries, args.rounds, args.targets.split(","))
    figures = summary(result)
    print(json.dumps(figures), flush=True)
    text = render(figures, (before, uptime()))
    print(text)
    if args.record:
        record(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
