"""An export at scale: what a full export plans waits on disk (the same result as in
memory), an unchanged hub leaves a partner's LDIF file unread, and the peak
memory of a large first export stays under a bound (a regression guard with
headroom, measured by the dirsync process itself)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import ldap
import pytest

from dirsync.entry import normalize_dn
from dirsync.sync.exportrun import ExportRun
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.twoway import (
    FIXTURES,
    entries,
    json_sync,
    kinds,
    ldap_directory,
    load_ldif,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = 24        # people in the fixture's ou=People


def export_config(slapd: SlapdServer, base: str, folder: Path,
                  foreign: dict[str, object], container: str) -> Path:
    hub = ldap_directory(slapd, folder, base)
    return write_config(folder, {"hub": hub, "foreign": foreign}, [{
        "name": "partner", "foreign": "foreign", "hub": "hub", "direction": "export",
        "mapping": "generic-ldap", "export_containers": [f"ou=People,{base}"],
        "foreign_container": container}])


def exported(slapd: SlapdServer, container: str) -> dict[str, dict[str, list[str]]]:
    found = entries(slapd, container, "(dirsyncSource=*)", attrs=["*"])
    return {normalize_dn(dn): {k.lower(): sorted(v) for k, v in a.items()}
            for dn, a in found.items()}


def test_a_spooled_export_writes_and_reports_what_an_in_memory_one_does(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    spooled, in_memory = f"ou=Spooled,{base}", f"ou=InMemory,{base}"
    slapd.add_ou(spooled)
    slapd.add_ou(in_memory)
    foreign = ldap_directory(slapd, tmp_path, base)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    on_disk = export_config(slapd, base, tmp_path / "a", foreign, spooled)
    in_lists = export_config(slapd, base, tmp_path / "b", foreign, in_memory)
    first = json_sync(in_lists, capsys)
    monkeypatch.setattr(ExportRun, "spool_items", 0)     # every record goes to disk
    line = json_sync(on_disk, capsys)
    assert line["exit"] == 0 and kinds(line) == kinds(first) == (PEOPLE, 0, 0, 0)

    def moved(found: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        return {dn.split(",ou=", 1)[0]: {k: v for k, v in a.items()
                                         if k not in ("member",)}
                for dn, a in found.items()}

    assert moved(exported(slapd, spooled)) == moved(exported(slapd, in_memory))
    items = json.loads(Path(line["files"]["json"]).read_text())["entries"]
    assert len(items) == PEOPLE and all(i["status"] == "applied" for i in items)
    assert all(i["attributes"]["mail"]["after"] for i in items)
    applied = Path(line["files"]["ldif"]).read_text()
    assert applied.count("changetype: add") == PEOPLE
    # A change and a full run against the spooled state: in step.
    conn = slapd.connect()
    conn.modify_s(f"uid=swu,ou=People,{base}", [(ldap.MOD_REPLACE, "title", [b"Chief"])])
    conn.unbind_s()
    assert kinds(json_sync(on_disk, capsys)) == (0, 1, 0, 0)
    monkeypatch.undo()
    assert kinds(json_sync(on_disk, capsys, "--full")) == (0, 0, 0, 0)


def test_an_unchanged_hub_leaves_a_partner_ldif_file_unread(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    config = export_config(slapd, base, tmp_path, {
        "kind": "ldif", "path": "partner.ldif", "base": "o=Partner"}, "ou=Contoso,o=Partner")
    assert kinds(json_sync(config, capsys)) == (PEOPLE, 0, 0, 0)
    path = tmp_path / "partner.ldif"
    written = path.read_bytes()
    # A run that read the file now would fail on it; one with nothing to do does not.
    path.write_text("dn: cn=broken\nno colon here\n", encoding="utf-8")
    line = json_sync(config, capsys)
    assert line["exit"] == 0 and line["mode"] == "incremental"
    assert kinds(line) == (0, 0, 0, 0) and line["counts"]["unchanged"] == PEOPLE
    assert path.read_text(encoding="utf-8") == "dn: cn=broken\nno colon here\n"
    path.write_bytes(written)
    conn = slapd.connect()
    conn.modify_s(f"uid=swu,ou=People,{base}", [(ldap.MOD_REPLACE, "title", [b"Chief"])])
    conn.unbind_s()
    line = json_sync(config, capsys)
    assert line["exit"] == 0 and kinds(line) == (0, 1, 0, 0)
    assert b"title: Chief\n" in path.read_bytes()


#: Hub entries of the memory guard, and the bound on the first export's peak.
#: Holding the read entries and the planned changes in memory took 236 MB at
#: 20,000 entries; spooled, the run peaks near 100 MB.
GUARD_ENTRIES = 20_000
GUARD_MB = 170
#: Entries of the flatness guard's small and large first export to an LDIF file,
#: and how much more the large one may peak. Holding one record per entry in
#: the run (the wanted and planned records, the maps of anchors, the notes, the
#: state rows) took about 1.5 KB an entry, the partner file as entries 3.5 KB
#: more: 5 KB an entry, 100 MB over these 20,000 entries. On disk, what still
#: grows between these sizes is bounded: the write buffers of the scratch tables
#: (8,192 records each), the spools' first 256 records, the DN caches (65,536).
FLAT_ENTRIES = (5_000, 25_000)
FLAT_GROWTH_MB = 50


SUFFIX = "o=Guard"


def guard_hub(tmp_path: Path, count: int) -> SlapdServer:
    """A hub (syncprov) of ``count`` people in ou=People, loaded by slapadd, started."""
    suffix = SUFFIX
    hub = SlapdServer(suffix=suffix, dbnosync=True, syncprov=True)
    ldif = tmp_path / "hub.ldif"
    with open(ldif, "w", encoding="ascii") as stream:
        stream.write(f"dn: {suffix}\nobjectClass: organization\no: Guard\n\n"
                     f"dn: ou=People,{suffix}\nobjectClass: organizationalUnit\nou: People\n\n"
                     f"dn: ou=Partner,{suffix}\nobjectClass: organizationalUnit\nou: Partner\n\n")
        stream.writelines(f"dn: uid=u{i},ou=People,{suffix}\nobjectClass: inetOrgPerson\n"
                          f"uid: u{i}\ncn: User {i}\nsn: {i}\nmail: u{i}@guard.example\n"
                          "title: Engineer\n\n" for i in range(count))
    conf = hub.workdir / "slapd.conf"
    conf.write_text(hub.config_text())
    subprocess.run(["slapadd", "-q", "-f", str(conf), "-l", str(ldif)], check=True,
                   capture_output=True)
    return hub.start()


def guard_config(hub: SlapdServer, tmp_path: Path, target: str) -> Path:
    # The partner is a subtree of the same server, or a file: what the
    # dirsync process holds is the run's own.
    foreign: dict[str, object] = ldap_directory(hub, tmp_path, SUFFIX) \
        if target == "ldap" else {"kind": "ldif", "path": "partner.ldif", "base": SUFFIX}
    return export_config(hub, SUFFIX, tmp_path, foreign, f"ou=Partner,{SUFFIX}")


def peak_sync(config: Path) -> tuple[dict[str, Any], float]:
    """One ``dirsync sync`` process: its JSON line and its peak memory (MB, as it logs it)."""
    done = subprocess.run([sys.executable, "-m", "dirsync", "-vv", "-c", str(config),
                           "--json", "sync"], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    peaks = [float(m) for m in re.findall(r"peak memory so far ([\d.]+) MB", done.stderr)]
    assert peaks
    return line, max(peaks)


def first_export_peak(tmp_path: Path, count: int, target: str) -> float:
    """The peak memory (MB) of a first export of ``count`` hub entries to a
    subtree of the hub itself (``ldap``) or an LDIF file."""
    hub = guard_hub(tmp_path, count)
    try:
        line, peak = peak_sync(guard_config(hub, tmp_path, target))
    finally:
        hub.destroy()
    assert line["counts"]["add"] == count
    if target == "ldif":
        assert (tmp_path / "partner.ldif").read_text().count("\ndn: ") >= count
    return peak


def test_a_large_first_export_keeps_its_peak_memory_under_a_bound(tmp_path: Path) -> None:
    peak = first_export_peak(tmp_path, GUARD_ENTRIES, "ldap")
    assert peak < GUARD_MB, peak


def test_a_first_export_to_an_ldif_file_peaks_flat_with_the_hub_size(tmp_path: Path) -> None:
    small, large = FLAT_ENTRIES
    (tmp_path / "small").mkdir()
    (tmp_path / "large").mkdir()
    low = first_export_peak(tmp_path / "small", small, "ldif")
    high = first_export_peak(tmp_path / "large", large, "ldif")
    assert high - low < FLAT_GROWTH_MB, (low, high)


#: Hub entries of the change guard, the modifies of its small and large change,
#: and how much more the large one may peak. The entries a change reads again
#: from the hub, and their foreign entries, held as objects took about 8 KB a
#: changed entry (a 1% change of a million, 12,000 entries, peaked at 188 MB to
#: an LDIF file, 149 MB to a partner slapd; 37 and 40 MB more here). On disk,
#: 12 and 11 MB more; with the changed entries' state rows, UUIDs and addresses
#: on disk too, and the caches and buffers bounded for a change (a DN cache of
#: 65,536 names, 8,192 writes buffered per scratch table), 5 and 1 MB more.
CHANGE_ENTRIES = 20_000
CHANGES = (400, 4_000)
CHANGE_GROWTH_MB = 10


def modify_titles(hub: SlapdServer, first: int, count: int, title: str) -> None:
    conn = hub.connect()
    try:
        for i in range(first, first + count):
            conn.modify_s(f"uid=u{i},ou=People,{SUFFIX}",
                          [(ldap.MOD_REPLACE, "title", [title.encode()])])
    finally:
        conn.unbind_s()


@pytest.mark.parametrize("target", ["ldif", "ldap"])
def test_a_change_to_an_export_peaks_flat_with_the_number_of_changed_entries(
        tmp_path: Path, target: str) -> None:
    small, large = CHANGES
    hub = guard_hub(tmp_path, CHANGE_ENTRIES)
    try:
        config = guard_config(hub, tmp_path, target)
        line, _ = peak_sync(config)
        assert line["counts"]["add"] == CHANGE_ENTRIES
        modify_titles(hub, 0, small, "Small")
        line, low = peak_sync(config)
        assert line["mode"] == "incremental" and line["counts"]["modify"] == small
        modify_titles(hub, small, large, "Large")
        line, high = peak_sync(config)
        assert line["mode"] == "incremental" and line["counts"]["modify"] == large
    finally:
        hub.destroy()
    assert high - low < CHANGE_GROWTH_MB, (low, high)


def test_nested_export_containers_export_each_entry_once(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    counts = []
    for name, containers in (("one", [base]), ("nested", [f"ou=People,{base}", base])):
        container = f"ou={name},{base}"
        slapd.add_ou(container)
        (tmp_path / name).mkdir()
        hub = ldap_directory(slapd, tmp_path / name, base)
        config = write_config(tmp_path / name, {"hub": hub, "foreign": hub}, [{
            "name": name, "foreign": "foreign", "hub": "hub", "direction": "export",
            "mapping": "generic-ldap", "export_containers": containers,
            "export_filter": "(!(dirsyncSource=*))", "foreign_container": container}])
        line = json_sync(config, capsys)
        assert line["exit"] == 0 and line["counts"]["conflict"] == 0, line
        counts.append(kinds(line))
    assert counts[0] == counts[1] and counts[0][0] >= PEOPLE
