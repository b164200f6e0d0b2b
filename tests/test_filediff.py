"""A changed CSV source compared with the state by row digest (dirsync.sync.filediff).

The row digests are checked without a server against the entries the
reader makes; the comparison itself runs against a real slapd: what a run
that compares by digest writes must be what a full read would have
written, and where it cannot say the same, it gives way to the full read.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dirsync.cli.main import main
from dirsync.directories.csvfile import CSVDirectory, CSVLayout
from dirsync.entry import rdn_values
from dirsync.sync import filediff
from dirsync.sync.entryspool import MEMORY_ENTRIES
from dirsync.sync.plan import source_hash
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_row, gal_rows, hub_config, search, write_csv

CELL = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=8),
       separator=st.sampled_from([None, ";"]))
def test_a_rows_digest_is_the_one_its_entry_carries(tmp_path: Path, rows: list[list[str]],
                                                    separator: str | None) -> None:
    path = write_rows(tmp_path / "rows.csv", ["Alias", "Mail", "Notes"], rows)
    layout = CSVLayout(multi_value_separator=separator)
    entries = list(CSVDirectory(path, layout=layout, create=False).read())
    digests = {line: (digest, key) for digest, key, line, _ in
               CSVDirectory(path, layout=layout, create=False).digests()}
    for entry in entries:
        assert entry.line is not None and entry.digest is not None
        digest, key = digests[entry.line]
        assert entry.digest == digest == source_hash(entry)
        assert key == rdn_values(entry.dn)[0][1].casefold()
    # Every row the reader accepts is digested; the digests leave out only
    # the rows it rejects for their shape, and look for no repeated keys.
    assert len(digests) >= len(entries)


def test_a_digest_covers_the_columns_and_a_changed_entry_forgets_it(tmp_path: Path) -> None:
    row = [["ann", "ann@example.org"]]
    one = next(CSVDirectory(write_rows(tmp_path / "a.csv", ["Alias", "Mail"], row)).digests())
    two = next(CSVDirectory(write_rows(tmp_path / "b.csv", ["Alias", "Email"], row)).digests())
    assert one[0] != two[0]
    entry = next(CSVDirectory(tmp_path / "a.csv").read())
    assert entry.digest == one[0]
    entry.set("Mail", [b"other@example.org"])
    assert entry.digest is None and source_hash(entry) != one[0]


def test_read_lines_makes_entries_of_those_rows_only(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "rows.csv", ["Alias", "Notes"],
                      [["ann", "two\nlines"], ["bob", "x"], ["", "no key"], ["cy", "y\r\nz"]])
    directory = CSVDirectory(path)
    spans = {key: (line, last) for _, key, line, last in directory.digests()}
    assert spans == {"ann": (2, 3), "bob": (4, 4), "cy": (6, 7)}
    assert len(directory.rejected) == 1            # the row without a key
    found = list(directory.read_lines(dict([spans["cy"], spans["ann"]])))
    whole = {e.first("Alias"): e for e in CSVDirectory(path).read()}
    assert [(e.first("Alias"), e.line, e.digest, e.attrs) for e in found] == [
        (a, whole[a].line, whole[a].digest, whole[a].attrs) for a in ("ann", "cy")]
    assert len(directory.rejected) == 1            # kept from the digests' read


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=8),
       picked=st.sets(st.integers(0, 7)))
def test_rows_read_again_by_their_lines_are_the_entries_read_whole(
        tmp_path: Path, rows: list[list[str]], picked: set[int]) -> None:
    # Keys of their own: a file whose rows share one is read whole instead.
    rows = [[f"k{n}:{row[0]}", *row[1:]] for n, row in enumerate(rows)]
    path = write_rows(tmp_path / "rows.csv", ["Alias", "Mail", "Notes"], rows)
    directory = CSVDirectory(path, create=False)
    digests = list(directory.digests())
    # A cell's bare CR ends a line, and the rest of it can be a row with
    # another row's key: such a file is read whole instead (filediff).
    assume(len({key for _, key, _, _ in digests}) == len(digests))
    spans = [(line, last) for _, _, line, last in digests]
    chosen = dict(span for n, span in enumerate(spans) if n in picked)
    again = [(e.line, e.dn, e.attrs, e.digest) for e in directory.read_lines(chosen)]
    whole = [(e.line, e.dn, e.attrs, e.digest) for e in CSVDirectory(path).read()
             if e.line in chosen]
    assert again == whole


# -- against a real slapd ------------------------------------------------------------

def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    status = main(["-v", "-c", str(config), "--json", "sync", *args])
    captured = capsys.readouterr()
    line: dict[str, object] = json.loads(captured.out.strip().splitlines()[-1])
    line["exit"] = status
    line["log"] = captured.err
    return line


def counts(line: dict[str, object]) -> dict[str, int]:
    found = line["counts"]
    assert isinstance(found, dict)
    return found


def synced(slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
           count: int, edit: tuple[str, str] | None = None, **options: str
           ) -> tuple[str, list[dict[str, str]], Path, Path]:
    """A CSV export of ``count`` rows synced once into the hub: (container,
    rows, source, config); ``edit`` changes the config's text first."""
    container = f"ou=Import,{base}"
    rows = gal_rows(count)
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, container, source, **options)  # type: ignore[arg-type]
    if edit is not None:
        config.write_text(config.read_text().replace(*edit))
    assert counts(sync(config, capsys))["add"] == count
    return container, rows, source, config


def hand_deleted(slapd: SlapdServer, container: str, anchor: str) -> None:
    """Delete this anchor's hub entry behind dirsync's back."""
    dn = next(iter(search(slapd, container, f"(dirsyncAnchor={anchor})", attrs=["cn"])))
    slapd.connect().delete_s(dn)


def csns(server: SlapdServer, container: str) -> dict[str, bytes]:
    found = search(server, container, "(dirsyncSource=*)", attrs=["entryCSN"])
    return {dn: attrs["entryCSN"][0] for dn, attrs in found.items()}


def test_a_rewritten_file_is_compared_by_digest_and_writes_what_changed(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container, rows, source, config = synced(slapd, base, tmp_path, capsys, 40)
    before = csns(slapd, container)

    write_csv(source, rows[::-1])                # the same rows in another order
    line = sync(config, capsys)
    assert line["mode"] == "incremental" and line["exit"] == 0
    assert counts(line)["unchanged"] == 40 and counts(line)["add"] == 0
    assert "compared entry by entry" not in str(line["log"])
    assert csns(slapd, container) == before       # nothing written

    changed = [gal_row(r["Alias"], Title="Manager") if i in (3, 9) else r
               for i, r in enumerate(rows) if i != 5] + [gal_row("newcomer")]
    write_csv(source, changed[::-1])
    line = sync(config, capsys)
    assert line["mode"] == "incremental"
    assert {k: counts(line)[k] for k in ("add", "modify", "delete", "unchanged")} == \
        {"add": 1, "modify": 2, "delete": 1, "unchanged": 37}
    titles = search(slapd, container, "(title=Manager)", attrs=["cn"])
    assert len(titles) == 2
    # A full read of the same file finds nothing left to do.
    full = sync(config, capsys, "--full")
    assert full["mode"] == "full"
    assert counts(full)["add"] + counts(full)["modify"] + counts(full)["delete"] == 0


def test_the_state_is_trusted_until_a_full_run(slapd: SlapdServer, base: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    container, rows, source, config = synced(slapd, base, tmp_path, capsys, 6)
    hand_deleted(slapd, container, "u000002")
    write_csv(source, rows[::-1])
    line = sync(config, capsys)
    assert counts(line)["add"] == 0 and counts(line)["unchanged"] == 6
    line = sync(config, capsys, "--full")
    assert counts(line)["add"] == 1
    assert search(slapd, container, "(dirsyncAnchor=u000002)", attrs=["cn"])


def test_rows_that_share_a_key_are_read_entry_by_entry(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container, rows, source, config = synced(slapd, base, tmp_path, capsys, 5)
    write_csv(source, [*rows, gal_row("u000001", Title="Impostor")])
    line = sync(config, capsys)
    assert "compared entry by entry: rows share a key" in str(line["log"])
    assert line["exit"] == 1 and counts(line)["error"] == 1
    assert "duplicate key" in json.dumps(line)
    assert not search(slapd, container, "(title=Impostor)", attrs=["cn"])


def test_an_anchor_a_changed_and_an_unchanged_row_share_is_read_entry_by_entry(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The file's key is the e-mail column; the anchor is the alias (csv-gal).
    container, rows, source, config = synced(slapd, base, tmp_path, capsys, 5,
                                             edit=('key = "Alias"', 'key = "Email"'))
    twin = gal_row("u000001", Email="twin@po1.example", Title="Twin")
    write_csv(source, [*rows, twin])
    line = sync(config, capsys)
    assert "has the anchor 'u000001' of an unchanged one" in str(line["log"])
    assert counts(line)["error"] == 1 and "same anchor" in json.dumps(line)
    assert not search(slapd, container, "(title=Twin)", attrs=["cn"])


def test_more_changes_than_the_limit_are_read_whole(
        slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, rows, source, config = synced(slapd, base, tmp_path, capsys, 8)
    monkeypatch.setattr(filediff, "limit", lambda held: 3)
    write_csv(source, [gal_row(r["Alias"], Title="Lead") for r in rows[:5]] + rows[5:])
    line = sync(config, capsys)
    assert "compared entry by entry: more than 3 rows changed" in str(line["log"])
    assert line["mode"] == "incremental" and counts(line)["modify"] == 5


def test_lists_as_groups_read_a_changed_file_whole(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A group's members are resolved against every entry: each row is read
    # and checked against the hub, so an entry deleted by hand comes back.
    container, rows, source, config = synced(slapd, base, tmp_path, capsys, 4, lists="group")
    hand_deleted(slapd, container, "u000002")
    write_csv(source, rows[::-1])
    line = sync(config, capsys)
    assert line["mode"] == "incremental"
    assert counts(line)["add"] == 1 and counts(line)["unchanged"] == 3


def test_a_row_gone_whose_entry_the_hub_lost_already_needs_no_delete(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # As after a run killed between its deletes and their state rows.
    container, rows, source, config = synced(slapd, base, tmp_path, capsys, 6)
    hand_deleted(slapd, container, "u000004")
    write_csv(source, rows[:4] + rows[5:])
    line = sync(config, capsys)
    assert line["exit"] == 0 and counts(line)["delete"] == 0
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    assert [p["message"] for p in report["problems"] if p["anchor"] == "u000004"] == \
        ["already gone from the hub; its state row goes"]
    again = sync(config, capsys, "--full")
    assert counts(again)["delete"] + counts(again)["add"] == 0 and again["exit"] == 0


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.sets(st.integers(0, 60), max_size=40), held=st.sets(st.integers(0, 60),
                                                                   max_size=40),
       block=st.integers(1, 7))
def test_the_merge_finds_what_either_side_lacks_across_blocks(
        rows: set[int], held: set[int], block: int) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE entries (connection TEXT, direction TEXT, anchor TEXT, dn TEXT, "
               "hash TEXT, kind TEXT)")
    db.executemany("INSERT INTO entries VALUES ('c', 'import', ?, '', ?, 'person')",
                   [(f"a{n}", f"{n:04x}") for n in held] + [("blank", "")])
    db.execute("CREATE TEMP TABLE filediff (digest TEXT, keyfold TEXT, line INTEGER, "
               "last INTEGER)")
    db.executemany("INSERT INTO temp.filediff VALUES (?, ?, ?, ?)",
                   [(f"{n:04x}", f"k{n}", 1000 + n, 2000 + n) for n in rows])
    tracking = SimpleNamespace(connection="c", direction="import")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filediff, "_BLOCK", block)
        found = filediff._merge(db, tracking, 10_000)  # type: ignore[arg-type]
        assert not isinstance(found, str)
        lines, gone = found
        assert lines == {1000 + n: 2000 + n for n in rows - held}
        assert gone == {f"a{n}" for n in held - rows} | {"blank"}
        over = filediff._merge(db, tracking, 0)   # "blank" alone is one change
        assert over == "more than 0 rows changed"
        if held:
            db.execute("INSERT INTO entries VALUES ('c', 'import', 'twin', '', ?, 'person')",
                       (f"{min(held):04x}",))
            assert filediff._merge(db, tracking, 10_000) == "state rows share a digest"


def deleted_files_open() -> int:
    """Files this process holds open that are unlinked (a spool's temporary file)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd).endswith("(deleted)")
        except FileNotFoundError:      # the listing's own descriptor, closed since
            pass
    return count


def test_the_spool_of_changed_rows_is_closed_when_the_run_ends(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # More changed rows than an entry spool keeps in memory: they go to a
    # temporary file, which the run's end must close (a scheduler's process
    # would otherwise hold one per run until the collector came by).
    # (300 changes of 3,000: under the limit, compared by digest.)
    _, rows, source, config = synced(slapd, base, tmp_path, capsys, 3000)
    write_csv(source, [gal_row(r["Alias"], Title="Manager") if i < MEMORY_ENTRIES + 44 else r
                       for i, r in enumerate(rows)])
    before = deleted_files_open()
    line = sync(config, capsys)
    assert line["mode"] == "incremental"
    assert counts(line)["modify"] == MEMORY_ENTRIES + 44
    assert "compared entry by entry" not in str(line["log"])
    assert deleted_files_open() == before
