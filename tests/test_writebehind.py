"""WriteBehind: state rows of confirmed changes, committed a batch at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dirsync.state.store import StateRow, StateStore
from dirsync.state.writebehind import WriteBehind, write_behind


def committed(path: Path) -> int:
    """Rows another connection sees: only committed ones."""
    other = sqlite3.connect(path)
    try:
        return int(other.execute("SELECT count(*) FROM entries").fetchone()[0])
    finally:
        other.close()


def put(store: StateStore):  # type: ignore[no-untyped-def]
    return lambda anchor: store.put("c", "import", anchor, StateRow(f"cn={anchor}", "h", "person"))


def test_rows_wait_until_a_batch_is_full_then_are_committed_together(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore(path)
    batch = WriteBehind(store, put(store), rows=3, seconds=3600)
    batch.add("a")
    batch.add("b")
    assert committed(path) == 0
    batch.add("c")
    assert committed(path) == 3
    batch.add("d")
    batch.flush()
    assert committed(path) == 4 and store.entries("c")["d"].dn == "cn=d"


def test_a_row_waits_no_longer_than_its_time(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore(path)
    batch = WriteBehind(store, put(store), rows=1000, seconds=0.0)
    batch.add("a")
    assert committed(path) == 1


def test_the_last_rows_are_written_when_the_block_fails(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore(path)
    with pytest.raises(RuntimeError), write_behind(store, put(store), rows=1000,
                                                    seconds=3600) as batch:
        batch.add("a")
        batch.add("b")
        raise RuntimeError("the hub went away")
    assert committed(path) == 2
