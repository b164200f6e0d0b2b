"""The cursor both directions share (dirsync.sync.cursor), without a server.

What an incremental run reads comes from real servers in test_incremental,
test_export_incremental and tests/ad; this file checks the bookkeeping that
the two directions share: what a run's end stores, what a fall back to a
full run forgets, and which UUIDs are read again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirsync.config import ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.directories.syncrepl import PresentUUIDs
from dirsync.entry import Entry
from dirsync.state.store import StateRow, StateStore
from dirsync.sync.changefeed import ChangeFeed, Changes, FileFeed, Stream
from dirsync.sync.changestate import COOKIE, FILE, LAST_FULL, RETRY, ChangeState
from dirsync.sync.cursor import Cursor
from dirsync.sync.plan import Counts
from dirsync.sync.report import Problem


@dataclass
class FakeRun:
    """The fields of a run the cursor reads and sets (cursor.RunFields)."""

    state: StateStore
    connection: ConnectionConfig
    direction: str = "import"
    mode: str = "incremental"
    run_id: int = 0
    counts: Counts = field(default_factory=Counts)
    problems: list[Problem] = field(default_factory=list)
    held: set[str] = field(default_factory=set)
    name: str = "fab"


class ScriptedFeed(ChangeFeed):
    """A feed whose changes are given: the cursor's side of a change read."""

    method = "syncrepl"

    def __init__(self, stream: Stream, found: Changes | str,
                 by_uuid: dict[str, Entry] | None = None) -> None:
        super().__init__([stream])
        self.found = found
        self.by_uuid = by_uuid or {}
        self.asked: list[list[str]] = []

    def read_changes(self, tracking: ChangeState) -> Changes | str:
        self.pending[self.streams[0].cursor(COOKIE)] = "cookie-2"
        return self.found

    def read_uuids(self, uuids: list[str]) -> dict[str, Entry]:
        self.asked.append(uuids)
        return {u: e for u, e in self.by_uuid.items() if u in uuids}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite") as store:
        yield store


def a_run(state: StateStore, direction: str = "import") -> FakeRun:
    connection = ConnectionConfig(index=0, name="fab", foreign="f", hub="h", mapping="m",
                                  mapping_path=Path("m.toml"))
    run = FakeRun(state, connection, direction=direction)
    run.run_id = state.start_run("fab", direction, "incremental", False)
    # An incremental run needs rows and a recent full run, or it goes full.
    state.put("fab", direction, "anchor-a", StateRow("cn=a", "h", "person"))
    ChangeState(state, "fab", direction).mark_full()
    return run


def entry(uuid: str) -> Entry:
    found = Entry(f"cn={uuid}")
    found.set("entryUUID", [uuid.encode()])
    return found


def test_an_incremental_import_keeps_a_retried_deleted_uuid_and_stores_the_cookie(
        state: StateStore) -> None:
    run = a_run(state)
    cursor = Cursor(state, "fab", "import", logging.getLogger("test"), by_uuid=False)
    cursor.tracking.remember([("u-gone", "anchor-gone"), ("u-kept", "anchor-kept")])
    cursor.tracking.set_retry({"u-retry"})
    stream = Stream(ReadOptions(), cursor.tracking)
    feed = ScriptedFeed(stream, Changes([("u-new", entry("u-new"))], {"u-gone", "u-kept"},
                                        {"u-gone": "anchor-gone", "u-kept": "anchor-kept"}),
                        by_uuid={})
    cursor.feed = feed
    assert cursor.start(run) is False and cursor.incremental
    # The entry with errors last time is asked for again; gone, it is a delete.
    assert feed.asked == [["u-retry"]]
    assert cursor.changes is not None and "u-retry" not in cursor.changes.deleted  # not mapped
    stream.read = {"u-new": "anchor-new"}
    stream.gone = {"u-gone", "u-kept"}
    # A delete of anchor-kept failed: its UUID is read again and stays in the map.
    cursor.commit(run, ["anchor-kept"])
    assert cursor.tracking.all_uuids() == {"u-kept": "anchor-kept", "u-new": "anchor-new"}
    assert cursor.tracking.retry() == {"u-kept"}
    assert cursor.tracking.cursor(COOKIE) == "cookie-2"


def test_an_export_anchor_is_its_uuid_and_a_full_run_replaces_the_map(
        state: StateStore) -> None:
    run = a_run(state, "export")
    run.mode = "full"
    run.held = {"u-held"}
    run.problems = [Problem("error", "u-bad", "cn=bad", "no"), Problem("note", "u-note", None, "")]
    cursor = Cursor(state, "fab", "export", logging.getLogger("test"), by_uuid=True)
    uuids = ChangeState(state, "fab", "export ou=people")
    uuids.remember([("u-old", "u-old")])
    stream = Stream(ReadOptions(), uuids, container="ou=People")
    feed = ScriptedFeed(stream, "unused")
    cursor.feed = feed
    assert cursor.start(run) is False and not cursor.incremental   # a full run reads all
    stream.read = {"u-1": "u-1"}
    feed.pending[stream.cursor(COOKIE)] = "cookie-full"
    cursor.commit(run, ["u-failed"])
    assert uuids.all_uuids() == {"u-1": "u-1"}
    assert cursor.tracking.retry() == {"u-bad", "u-held", "u-failed"}
    assert cursor.tracking.cursor(f"{COOKIE} ou=people") == "cookie-full"
    assert cursor.tracking.cursor(LAST_FULL) is not None


def test_a_cursor_the_feed_cannot_serve_makes_a_full_run_that_forgets_what_it_read(
        state: StateStore, caplog: pytest.LogCaptureFixture) -> None:
    run = a_run(state)
    cursor = Cursor(state, "fab", "import", logging.getLogger("test.cursor"), by_uuid=False)
    stream = Stream(ReadOptions(), cursor.tracking)
    feed = ScriptedFeed(stream, "the server cannot serve the stored cookie (too old)")
    cursor.feed = feed
    with caplog.at_level(logging.INFO, logger="test.cursor"):
        assert cursor.start(run) is False
    assert run.mode == "full" and not cursor.incremental
    assert feed.pending == {}    # the cookie of the refused read is not stored
    assert "a full import run: the server cannot serve the stored cookie" in caplog.text
    (record,) = state.runs("fab")
    assert record.mode == "full"


def test_nothing_is_stored_before_the_end_and_a_file_with_errors_keeps_no_fingerprint(
        state: StateStore, tmp_path: Path) -> None:
    run = a_run(state)
    path = tmp_path / "source.csv"
    path.write_text("a,b\n")
    cursor = Cursor(state, "fab", "import", logging.getLogger("test"), by_uuid=False)
    cursor.feed = FileFeed(path)
    assert cursor.start(run) is False          # no fingerprint stored: the file changed
    assert cursor.tracking.cursor(FILE) is None
    cursor.commit(run, [])
    assert cursor.tracking.cursor(FILE) is not None
    assert cursor.start(run) is True           # as it was: nothing to read
    run.counts.error = 1
    cursor.commit(run, [])
    assert cursor.tracking.cursor(FILE) is None
    assert cursor.tracking.cursor(RETRY) is None   # a file is read whole again


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(known=st.sets(st.uuids().map(str), max_size=30), kept=st.data())
def test_the_uuids_a_present_phase_leaves_out_are_the_gone(
        tmp_path_factory: pytest.TempPathFactory, known: set[str], kept: st.DataObject) -> None:
    # A present phase lists every UUID that survives; the map's others are
    # gone. The list goes through a temporary file past its first few
    # (memory=3 here), and the comparison through a temporary table.
    present = set(kept.draw(st.sets(st.sampled_from(sorted(known)))) if known else set())
    present |= {str(uuid.uuid4()) for _ in range(5)}       # new entries: not in the map
    state = StateStore(tmp_path_factory.mktemp("state") / "state.sqlite")
    try:
        uuids = ChangeState(state, "fab", "export")
        uuids.remember((u, f"anchor {u}") for u in known)
        listed = PresentUUIDs(memory=3)
        for chunk in (sorted(present)[:4], sorted(present)[4:]):
            listed.update(chunk)
        assert sorted(listed) == sorted(present) == sorted(listed)   # read twice
        assert uuids.gone_except(listed) == {u: f"anchor {u}" for u in known - present}
        listed.close()
        assert list(listed) == []
    finally:
        state.close()
