"""Benchmark: ``dirsync diff`` against ``ldifsort.pl`` + ``ldifdiff.pl`` (Debian's
libnet-ldap-perl) on the same two generated LDIF files.

Run it with ``benchmarks/diff.sh`` (see its header); ``--help`` lists the
options. Not part of the test suite.

The files: N realistic inetOrgPerson entries under 50 department OUs, in
creation order (the order a server export lists them: parents first, but not
sorted), about 600 bytes each with UTF-8 names in base64, some folded lines
and a few binary photos. NEW is OLD with about 1% of the entries modified,
0.1% deleted, 0.1% added and 0.1% moved to another department.

Each tool runs as its own process under ``/usr/bin/time -v`` (or, where that
is missing, a wrapper reporting ``getrusage(RUSAGE_CHILDREN)``) for wall time
and peak resident memory. The perl pipeline is three processes in a row (sort
OLD, sort NEW, diff); its time is their sum and its peak memory their
maximum. A perl step past ``--perl-timeout`` is stopped and reported as such.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PERL_DIRS = ("/usr/share/doc/libnet-ldap-perl/examples", "/usr/share/perl5/Net/LDAP/examples",
             "/usr/local/share/doc/libnet-ldap-perl/examples")
SUFFIX = "dc=example,dc=org"
DEPARTMENTS = 50

FIRST = ["Ted", "Anna", "José", "Zoë", "Li", "Mark", "Sarah", "Ömer", "Chloé", "Raj", "Kim",
         "Ola", "Björn", "Nadia", "Pedro", "Yuki", "Ines", "Tomasz", "Aoife", "Kwame"]
LAST = ["Bremer", "Smith", "Müller", "García", "Nguyen", "O'Brien", "Kowalski", "Dubois",
        "Tanaka", "Svensson", "Rossi", "Novák", "Jensen", "Okafor", "Silva", "Öztürk"]
TITLES = ["Engineer", "Senior Engineer", "Manager", "Clerk", "Analyst", "Director",
          "Consultant", "Technician", "Accountant", "Designer"]
CITIES = ["Berlin", "Paris", "Zürich", "London", "Kraków", "Lisbon", "Oslo", "Madrid"]


# -- data ----------------------------------------------------------------------

def _line(attr: str, value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if isinstance(value, bytes) or not raw.isascii() or raw[:1] in (b" ", b":", b"<") \
            or raw.endswith(b" "):
        text = f"{attr}:: {base64.b64encode(raw).decode('ascii')}"
    else:
        text = f"{attr}: {value}"
    if len(text) <= 76:
        return text + "\n"
    # RFC 2849 folding: continuation lines start with one space.
    parts = [text[:76]] + [" " + text[i:i + 75] for i in range(76, len(text), 75)]
    return "\n".join(parts) + "\n"


def person(i: int, dept: int, rnd: random.Random, *, version: int = 0) -> str:
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    uid = f"u{i:07d}"
    lines = [
        _line("dn", f"uid={uid},ou=Dept{dept:02d},ou=People,{SUFFIX}"),
        ("objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n"
         "objectClass: inetOrgPerson\n"),
        _line("uid", uid),
        _line("cn", f"{first} {last}"),
        _line("sn", last),
        _line("givenName", first),
        _line("displayName", f"{last}, {first}"),
        _line("mail", f"{uid}@example.org"),
        _line("telephoneNumber", f"+49 30 {rnd.randint(1000000, 9999999)}"),
        _line("mobile", f"+49 170 {rnd.randint(1000000, 9999999)}"),
        _line("title", TITLES[(i + version) % len(TITLES)]),
        _line("departmentNumber", str(dept)),
        _line("employeeNumber", str(100000 + i)),
        _line("l", rnd.choice(CITIES)),
        _line("postalAddress", f"{rnd.randint(1, 200)} Main Street$Building "
                               f"{rnd.randint(1, 9)}$Floor {rnd.randint(1, 30)}"),
    ]
    if i % 7 == 0:
        lines.append(_line("description", f"Member of the {rnd.choice(TITLES).lower()} guild "
                                          f"since {rnd.randint(1990, 2024)}, speaks "
                                          f"{rnd.randint(1, 5)} languages and mentors others."))
    if i % 200 == 0:
        lines.append(_line("jpegPhoto", rnd.randbytes(1024)))
    return "".join(lines) + "\n"


def ou(name: str, parent: str) -> str:
    return (f"dn: ou={name},{parent}\nobjectClass: top\nobjectClass: organizationalUnit\n"
            f"ou: {name}\n\n")


@dataclass
class Expected:
    modified: int = 0
    deleted: int = 0
    added: int = 0
    moved: int = 0


def generate(n: int, old_path: Path, new_path: Path) -> Expected:
    """OLD and NEW of ``n`` people each (give or take the adds and deletes)."""
    plan = random.Random(42)
    expected = Expected()
    with open(old_path, "w", encoding="utf-8") as old, \
            open(new_path, "w", encoding="utf-8") as new:
        head = (f"version: 1\n\ndn: {SUFFIX}\nobjectClass: top\nobjectClass: dcObject\n"
                f"objectClass: organization\ndc: example\no: Example\n\n"
                + ou("People", SUFFIX)
                + "".join(ou(f"Dept{d:02d}", f"ou=People,{SUFFIX}") for d in range(DEPARTMENTS)))
        old.write(head)
        new.write(head)
        for i in range(n):
            dept = i % DEPARTMENTS
            roll = plan.random()
            # Same seed per entry: OLD and NEW agree on everything not changed.
            old.write(person(i, dept, random.Random(i)))
            if roll < 0.001:
                expected.deleted += 1
                continue
            if roll < 0.002:
                expected.moved += 1
                new.write(person(i, (dept + 1) % DEPARTMENTS, random.Random(i)))
            elif roll < 0.012:
                expected.modified += 1
                new.write(person(i, dept, random.Random(i), version=1))
            else:
                new.write(person(i, dept, random.Random(i)))
            if roll > 0.999:
                expected.added += 1
                new.write(person(n + i, dept, random.Random(n + i)))
    return expected


# -- measuring -------------------------------------------------------------------

# Fallback when /usr/bin/time is missing: run the command as the only child
# of a fresh interpreter and report its rusage (so runs never mix).
_WRAPPER = """
import resource, subprocess, sys
out = open(sys.argv[1], "wb") if sys.argv[1] != "-" else None
rc = subprocess.call(sys.argv[2:], stdout=out)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(f"\\nMaximum resident set size (kbytes): {peak}\\n")
sys.exit(rc)
"""


@dataclass
class Run:
    label: str
    entries: int
    seconds: float | None = None
    peak_mb: float | None = None
    note: str = ""
    stderr: str = ""


def measure(label: str, entries: int, cmd: list[str], stdout: Path | None,
            timeout: float) -> Run:
    timer = "/usr/bin/time"
    if os.access(timer, os.X_OK):
        full = [timer, "-v", *cmd]
        out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    else:
        full = [sys.executable, "-c", _WRAPPER, str(stdout) if stdout else "-", *cmd]
        out = subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(full, stdout=out, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # our own process group, started above
        proc.communicate()
        return Run(label, entries, note=f"stopped after {timeout:.0f} s")
    finally:
        if out not in (subprocess.DEVNULL, None):
            out.close()  # type: ignore[union-attr]
    seconds = time.perf_counter() - start
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    run = Run(label, entries, seconds, int(peak.group(1)) / 1024 if peak else None, stderr=err)
    if proc.returncode != 0:
        run.note = f"exit status {proc.returncode}: {err.strip().splitlines()[-1:]}"
    return run


def find_perl_tools() -> tuple[Path, Path] | None:
    for folder in PERL_DIRS:
        sort, diff = Path(folder, "ldifsort.pl"), Path(folder, "ldifdiff.pl")
        if sort.exists() and diff.exists():
            return sort, diff
    return None


def count_records(path: Path) -> int:
    with open(path, "rb") as stream:
        return sum(1 for line in stream if line.startswith(b"dn:"))


def perl_pipeline(n: int, old: Path, new: Path, work: Path, tools: tuple[Path, Path],
                  timeout: float) -> Run:
    """ldifsort.pl both files, then ldifdiff.pl: the changes turning OLD into NEW
    (ldifdiff.pl writes what turns its second file into its first)."""
    sort, diff = tools
    steps = [
        ("sort OLD", ["perl", str(sort), "-k", "dn", str(old)], work / "old.sorted.ldif"),
        ("sort NEW", ["perl", str(sort), "-k", "dn", str(new)], work / "new.sorted.ldif"),
        ("diff", ["perl", str(diff), "-k", "dn", str(work / "new.sorted.ldif"),
                  str(work / "old.sorted.ldif")], work / "perl.ldif"),
    ]
    total, peak, parts = 0.0, 0.0, []
    for name, cmd, out in steps:
        run = measure(name, n, cmd, out, timeout)
        if run.seconds is None or run.note:
            return Run("ldifsort.pl + ldifdiff.pl", n, note=f"{name}: {run.note}")
        total += run.seconds
        peak = max(peak, run.peak_mb or 0)
        parts.append(f"{name} {run.seconds:.0f} s / {run.peak_mb:.0f} MB")
    changes = count_records(work / "perl.ldif")
    return Run("ldifsort.pl + ldifdiff.pl", n, total, peak,
               f"{changes:,} change records; " + ", ".join(parts))


def dirsync_run(n: int, old: Path, new: Path, work: Path, key: str | None,
                expected: Expected, timeout: float) -> Run:
    python = REPO / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "dirsync", "diff",
           str(old), str(new), "-o", str(work / "dirsync.ldif")]
    label = "dirsync diff"
    if key:
        cmd += ["--key", key]
        label += f" --key {key}"
    run = measure(label, n, cmd, None, timeout)
    summary = re.search(r"diff: (\d+) added, (\d+) modified, (\d+) renamed, (\d+) deleted",
                        run.stderr)
    if summary is None:
        run.note = run.note or "no summary line"
        return run
    got = tuple(int(x) for x in summary.groups())
    if key:  # moves are renames, and each changes departmentNumber too
        want = (expected.added, expected.modified + expected.moved, expected.moved,
                expected.deleted)
    else:  # by DN a move is a delete and an add
        want = (expected.added + expected.moved, expected.modified, 0,
                expected.deleted + expected.moved)
    status = "as generated" if got == want else f"EXPECTED {want}"
    run.note = (f"{got[0]:,} added, {got[1]:,} modified, {got[2]:,} renamed, "
                f"{got[3]:,} deleted ({status})")
    return run


# -- the report -----------------------------------------------------------------

def machine() -> str:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    perl = subprocess.run(["perl", "-e", "print $^V"], capture_output=True, text=True,
                          check=False).stdout if shutil.which("perl") else "none"
    netldap = "?"
    if shutil.which("dpkg-query"):
        netldap = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libnet-ldap-perl"],
                                 capture_output=True, text=True, check=False).stdout or "?"
    return (f"{os.cpu_count()} cores (`nproc`), {mem} memory, Linux {platform.release()}, "
            f"Python {platform.python_version()}, perl {perl}, libnet-ldap-perl {netldap}")


DATA_NOTE = (
    "Both tools diff the same two generated files: inetOrgPerson entries (about 480 "
    "bytes each: UTF-8 names in base64, folded descriptions, a 1 KB jpegPhoto on one in "
    "200) under 50 department OUs, in creation order as a server export lists them "
    "(not sorted: both tools sort). NEW has about 1% of the entries modified, 0.1% "
    "deleted, 0.1% added and 0.1% moved to another department. By DN (dirsync's "
    "default, and ldifdiff.pl -k dn) a move is a delete and an add; with --key uid, "
    "dirsync writes it as a modrdn with newsuperior. The output column checks dirsync's "
    "counts against what the generator changed. Wall time and peak resident memory per "
    "process from /usr/bin/time -v; the perl pipeline is ldifsort.pl on each file, then "
    "ldifdiff.pl, one after the other (time summed, peak the largest).")


def verdict(runs: list[Run]) -> str:
    lines = []
    for n in sorted({r.entries for r in runs}):
        ours = next((r for r in runs if r.entries == n and r.label == "dirsync diff"), None)
        perl = next((r for r in runs if r.entries == n and r.label.startswith("ldifsort")),
                    None)
        if ours is None or ours.seconds is None:
            continue
        if perl is None or perl.seconds is None:
            note = f" (perl: {perl.note})" if perl is not None else ""
            lines.append(f"- {n:,} entries: dirsync {ours.seconds:.0f} s, peak "
                         f"{ours.peak_mb:.0f} MB{note}.")
            continue
        lines.append(f"- {n:,} entries: dirsync **{perl.seconds / ours.seconds:.1f}x faster** "
                     f"than ldifsort.pl + ldifdiff.pl ({ours.seconds:.0f} s against "
                     f"{perl.seconds:.0f} s), peak memory {ours.peak_mb:.0f} MB against "
                     f"{perl.peak_mb:.0f} MB (target: faster, under 500 MB).")
    return "\n".join(lines)


def table(runs: list[Run]) -> str:
    rows = ["| tool | entries per file | wall time | peak memory | output |",
            "|------|-----------------:|----------:|------------:|--------|"]
    for r in runs:
        secs = f"{r.seconds:.1f} s" if r.seconds is not None else "-"
        peak = f"{r.peak_mb:.0f} MB" if r.peak_mb is not None else "-"
        rows.append(f"| {r.label} | {r.entries:,} | {secs} | {peak} | {r.note} |")
    return "\n".join(rows)


def record(text: str) -> None:
    """Put ``text`` as the ``### diff`` part of the LDIF toolkit section,
    leaving everything else in RESULTS.md as it is."""
    path = REPO / "benchmarks" / "RESULTS.md"
    doc = path.read_text(encoding="utf-8")
    block = "### diff\n\n" + text.strip() + "\n\n"
    section = doc.find("## LDIF toolkit")
    if section < 0:
        doc = doc.rstrip() + "\n\n## LDIF toolkit\n\n" + block
    else:
        own = doc.find("### diff", section)
        after = re.compile(r"^#{2,3} ", re.MULTILINE)
        if own >= 0:
            nxt = after.search(doc, own + 1)
            end = nxt.start() if nxt else len(doc)
            doc = doc[:own] + block + doc[end:]
        else:
            nxt = re.compile(r"^## ", re.MULTILINE).search(doc, section + 1)
            end = nxt.start() if nxt else len(doc)
            doc = doc[:end].rstrip() + "\n\n" + block + doc[end:]
    path.write_text(doc, encoding="utf-8")


GENERATOR_VERSION = 1


def prepare(n: int, old: Path, new: Path, manifest: Path) -> Expected:
    """The two files, generated unless the same ones are already there."""
    want = {"entries": n, "version": GENERATOR_VERSION}
    if manifest.exists() and old.exists() and new.exists():
        saved = json.loads(manifest.read_text())
        if {k: saved.get(k) for k in want} == want:
            return Expected(**saved["expected"])
    print(f"== {n:,} entries per file: generating ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    expected = generate(n, old, new)
    print(f"   generated in {time.perf_counter() - started:.0f} s "
          f"({old.stat().st_size / 2**20:.0f} MB each); {expected}", file=sys.stderr)
    manifest.write_text(json.dumps({**want, "expected": expected.__dict__}))
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000,
                        help="people per file (default 1,000,000)")
    parser.add_argument("--perl-entries", default="100000,1000000",
                        help="sizes at which to run the perl tools too (comma-separated)")
    parser.add_argument("--perl-timeout", type=float, default=900,
                        help="seconds each perl step may take (default 900)")
    parser.add_argument("--key", default="uid", help="also run dirsync with --key KEY "
                        "('' to skip)")
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "scratch" / "diff"),
                        help="folder for the generated files (kept between runs)")
    parser.add_argument("--record", action="store_true",
                        help="write the results into benchmarks/RESULTS.md (### diff)")
    args = parser.parse_args(argv)

    tools = find_perl_tools()
    if tools is None:
        print("ldifsort.pl / ldifdiff.pl NOT FOUND (looked in: " + ", ".join(PERL_DIRS)
              + "); install Debian's libnet-ldap-perl to compare. Measuring dirsync only.",
              file=sys.stderr)
    sizes = sorted({args.entries} | {int(s) for s in args.perl_entries.split(",") if s})
    runs: list[Run] = []
    for n in sizes:
        work = Path(args.work) / str(n)
        work.mkdir(parents=True, exist_ok=True)
        old, new = work / "old.ldif", work / "new.ldif"
        expected = prepare(n, old, new, work / "manifest.json")
        for key in (None, args.key) if args.key else (None,):
            run = dirsync_run(n, old, new, work, key, expected, 3600)
            print(f"   {run.label}: {run.seconds} s, {run.peak_mb} MB, {run.note}",
                  file=sys.stderr, flush=True)
            runs.append(run)
        if tools is not None and str(n) in args.perl_entries.split(","):
            run = perl_pipeline(n, old, new, work, tools, args.perl_timeout)
            print(f"   {run.label}: {run.seconds} s, {run.peak_mb} MB, {run.note}",
                  file=sys.stderr, flush=True)
            runs.append(run)
        for name in ("old.sorted.ldif", "new.sorted.ldif"):
            (work / name).unlink(missing_ok=True)
    command = " ".join(["benchmarks/diff.sh", *(argv if argv is not None else sys.argv[1:])])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = (f"Command: `{command}`\n\n"
            f"Date: {datetime.date.today().isoformat()}. Machine: {machine()}; load average "
            f"at the end {load} (above {os.cpu_count()}, other jobs shared the machine and "
            f"the times are noisier).\n\n"
            + DATA_NOTE + "\n\n" + table(runs) + "\n\n" + verdict(runs) + "\n")
    if tools is None:
        text += "\nldifsort.pl / ldifdiff.pl were not found: no comparison in this run.\n"
    print(text)
    if args.record:
        record(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
