"""Fuzzing every way foreign input comes in (dirsync.testing.fuzz).

Each test feeds mutated fixtures to a reader or loader, or to a command
run in-process as the console script runs it, and asserts what the exit
status contract promises: an error dirsync raises on purpose (never any
other exception: that is a traceback), exit 0, 1, 2 or 3, no run past 20
seconds, and nothing changed by a run that exits 2.

The normal suite runs a short fixed budget; ``benchmarks/fuzz.sh`` runs a
long one (docs/operations.md, "Security").
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirsync.addresses.values import dn_problem
from dirsync.config import check_config
from dirsync.directories.csvfile import CSVDirectory, CSVLayout
from dirsync.errors import ConfigError, DirsyncError
from dirsync.ldif.io import LDIFReader
from dirsync.mapping.mapfile import load_mapping
from dirsync.testing.fuzz import (
    FIGURES,
    QUICKSTART_CONFIG,
    READER_CASES,
    ROOT,
    check_outcome,
    examples,
    mutated,
    run_cli,
    seed,
    snapshot,
    time_limit,
    workspace,
)
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import context_csn

# The readers take milliseconds an input, a command a tenth of a second:
# the long run (DIRSYNC_FUZZ_EXAMPLES) gives the readers five times more.
QUICK = settings(max_examples=examples(40, scale=5), deadline=None,
                 suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=examples(15), deadline=None,
                suppress_health_check=list(HealthCheck))

CHANGES = (b"version: 1\n\ndn: cn=Ted Bremer,ou=Paris,o=Fabrikam,c=FR\nchangetype: modify\n"
           b"replace: title\ntitle: Boss\n-\n\ndn: cn=Jean Dupont,ou=Paris,o=Fabrikam,c=FR\n"
           b"changetype: modrdn\nnewrdn: cn=Jean Dupond\ndeleteoldrdn: 1\n\n"
           b"dn: cn=Gone,ou=Lyon,o=Fabrikam,c=FR\nchangetype: delete\n\n")
LDIF_SEEDS = [seed("fabrikam.ldif")[:6000], seed("x400.ldif")[:6000], CHANGES,
              seed("roundtrip.ldif")[:6000]]
MAPPINGS = sorted((ROOT / "mappings").glob("*.toml"))


@pytest.fixture(autouse=True)
def figures() -> Iterator[None]:
    """With DIRSYNC_FUZZ_FIGURES=FILE, the figures so far go to FILE after each test."""
    yield
    target = os.environ.get("DIRSYNC_FUZZ_FIGURES")
    if target:
        FIGURES.save(target)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dirsync-fuzz-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def synced(scratch: Path) -> Path:
    """The quick start after one sync: a hub, a state, a source."""
    config = workspace(scratch / "baseline")
    assert run_cli(["-c", str(config), "sync"]).status == 0
    return config.parent


def ldif_input() -> st.SearchStrategy[bytes]:
    return st.sampled_from(LDIF_SEEDS).flatmap(mutated)


# -- the readers and loaders --------------------------------------------------

@QUICK
@given(data=ldif_input(), fast=st.booleans())
def test_the_ldif_reader(scratch: Path, data: bytes, fast: bool) -> None:
    READER_CASES[0] += 1
    path = scratch / "in.ldif"
    path.write_bytes(data)
    try:
        with time_limit(), LDIFReader(path, fast=fast) as reader:
            for record in reader:
                # Every DN read is one every later step can parse.
                assert dn_problem(record.dn) is None, record.dn
    except DirsyncError:
        pass


@QUICK
@given(data=mutated(seed("gal.csv")), key=st.sampled_from(["Alias", None]))
def test_the_csv_reader(scratch: Path, data: bytes, key: str | None) -> None:
    READER_CASES[0] += 1
    path = scratch / "in.csv"
    path.write_bytes(data)
    try:
        with time_limit():
            directory = CSVDirectory(path, layout=CSVLayout(key=key), create=False)
            entries = list(directory.read())
    except DirsyncError:
        return
    assert all(e.line is not None for e in entries)


@QUICK
@given(data=mutated(seed("gal.csv")), key=st.sampled_from(["Alias", None]))
def test_the_csv_row_digests(scratch: Path, data: bytes, key: str | None) -> None:
    # What a changed file is compared by (dirsync.sync.filediff): every entry
    # the reader accepts has its row's digest, at its line.
    READER_CASES[0] += 1
    path = scratch / "in.csv"
    path.write_bytes(data)
    try:
        with time_limit():
            layout = CSVLayout(key=key)
            rows = {line: digest for digest, _, line, _ in
                    CSVDirectory(path, layout=layout, create=False).digests()}
            entries = list(CSVDirectory(path, layout=layout, create=False).read())
    except DirsyncError:
        return
    assert all(rows[e.line] == e.digest for e in entries if e.line is not None)


@QUICK
@given(data=mutated(QUICKSTART_CONFIG.encode()))
def test_the_config_loader(scratch: Path, data: bytes) -> None:
    READER_CASES[0] += 1
    config = workspace(scratch / "config", config=data)
    with time_limit():
        loaded, problems = check_config(config)
    assert loaded is not None or problems


@QUICK
@given(data=st.sampled_from(MAPPINGS).map(Path.read_bytes).flatmap(mutated))
def test_the_mapping_loader(scratch: Path, data: bytes) -> None:
    READER_CASES[0] += 1
    path = scratch / "mapping.toml"
    path.write_bytes(data)
    try:
        with time_limit():
            load_mapping(path)
    except ConfigError:
        pass


# -- the commands, end to end --------------------------------------------------

@SLOW
@given(data=ldif_input(), dry_run=st.booleans())
def test_import_into_an_ldif_hub(synced: Path, scratch: Path, data: bytes,
                                 dry_run: bool) -> None:
    folder = scratch / "import"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(synced, folder)
    (folder / "in.ldif").write_bytes(data)
    before = snapshot(folder)
    args = ["import", *(["--dry-run"] if dry_run else []), str(folder / "var" / "hub.ldif"),
            str(folder / "in.ldif")]
    outcome = run_cli(args)
    check_outcome(outcome, before, snapshot(folder), f"import {data!r}")
    if dry_run:
        assert snapshot(folder) == before


@SLOW
@given(data=ldif_input(), dry_run=st.booleans())
def test_import_into_slapd(slapd: SlapdServer, base: str, scratch: Path,
                           monkeypatch: pytest.MonkeyPatch, data: bytes,
                           dry_run: bool) -> None:
    monkeypatch.setenv("DIRSYNC_BIND_DN", slapd.root_dn)
    monkeypatch.setenv("DIRSYNC_PASSWORD", slapd.root_pw)
    # The fixtures' entries, moved under this test's subtree of the server.
    data = data.replace(b"c=FR", base.encode()).replace(b"c=US", base.encode())
    path = scratch / "slapd.ldif"
    path.write_bytes(data)
    before = context_csn(slapd)
    outcome = run_cli(["import", *(["--dry-run"] if dry_run else []), slapd.url, str(path)])
    check_outcome(outcome, {}, {}, f"import {data!r}")
    if outcome.status == 2 or dry_run:
        # contextCSN moves with any write anywhere in the database.
        after = context_csn(slapd)
        if after != before:
            FIGURES.changed_by_exit_2 += outcome.status == 2
        assert after == before, (outcome, data)


@SLOW
@given(old=ldif_input(), new=ldif_input(), fmt=st.sampled_from(["ldif", "json", "text"]))
def test_diff(scratch: Path, old: bytes, new: bytes, fmt: str) -> None:
    folder = scratch / "diff"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    (folder / "old.ldif").write_bytes(old)
    (folder / "new.ldif").write_bytes(new)
    before = snapshot(folder)
    outcome = run_cli(["diff", "--format", fmt, "-o", str(folder / "out"),
                       str(folder / "old.ldif"), str(folder / "new.ldif")])
    check_outcome(outcome, before, snapshot(folder), f"diff {old!r} {new!r}")


def _e2e_inputs() -> st.SearchStrategy[dict[str, bytes]]:
    """One of the quick start's parts mutated: the CSV, the config or the mapping."""
    return st.one_of(
        mutated(seed("gal.csv")).map(lambda b: {"csv": b}),
        mutated(QUICKSTART_CONFIG.encode()).map(lambda b: {"config": b}),
        mutated((ROOT / "mappings" / "csv-gal.toml").read_bytes()).map(
            lambda b: {"mapping": b}))


@SLOW
@given(parts=_e2e_inputs(), command=st.sampled_from(["check", "plan", "sync --dry-run"]))
def test_check_and_dry_runs(synced: Path, scratch: Path, parts: dict[str, bytes],
                            command: str) -> None:
    folder = scratch / "e2e"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(synced, folder)
    workspace_parts(folder, parts)
    before = snapshot(folder)
    outcome = run_cli(["-c", str(folder / "dirsync.toml"), *command.split()])
    after = snapshot(folder)
    check_outcome(outcome, before, after, f"{command} {parts!r}")
    # Neither check nor a dry run changes the hub, the source or the state.
    assert after == before, (command, parts)


@SLOW
@given(data=mutated(seed("gal.csv")))
def test_sync_of_a_mutated_source(synced: Path, scratch: Path, data: bytes) -> None:
    folder = scratch / "sync"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(synced, folder)
    workspace_parts(folder, {"csv": data})
    before = snapshot(folder)
    outcome = run_cli(["-c", str(folder / "dirsync.toml"), "sync"])
    check_outcome(outcome, before, snapshot(folder), f"sync {data!r}")


def workspace_parts(folder: Path, parts: dict[str, bytes]) -> None:
    if "csv" in parts:
        (folder / "var" / "po1.csv").write_bytes(parts["csv"])
    if "config" in parts:
        (folder / "dirsync.toml").write_bytes(parts["config"])
    if "mapping" in parts:
        (folder / "csv-gal.toml").write_bytes(parts["mapping"])
