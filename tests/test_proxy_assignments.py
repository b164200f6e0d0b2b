"""Generated addresses in the state store: looked up by anchor and by address,
not loaded whole; and a state file from before the address index, migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dirsync.state.store import StateStore
from dirsync.sync.proxygen import (
    PROBE_LIMIT,
    Assigner,
    AssignmentStore,
    Remembered,
    address_key,
)

#: proxy_assignments as a state file of the previous version holds it: no
#: proxy_assignment_keys table beside it.
OLD_TABLE = """
CREATE TABLE proxy_assignments (
    hub TEXT NOT NULL, anchor TEXT NOT NULL, type TEXT NOT NULL, address TEXT NOT NULL,
    updated TEXT NOT NULL, base TEXT, former TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (hub, anchor, type)
) WITHOUT ROWID
"""


def old_state_file(path: Path) -> None:
    with StateStore(path):
        pass
    db = sqlite3.connect(path)
    db.execute(OLD_TABLE)
    db.executemany("INSERT INTO proxy_assignments VALUES (?, ?, ?, ?, ?, ?, ?)", [
        ("hub", "a1", "SMTP", "ted@c.example", "2026-01-01", "ted@c.example",
         "old.ted@c.example\nolder.ted@c.example"),
        ("hub", "a2", "SMTP", "Kim@C.example", "2026-01-01", None, ""),
        ("hub", "a3", "NOTES", "Ted@Exchange", "2026-01-01", None, ""),
        ("other", "a4", "SMTP", "sam@c.example", "2026-01-01", None, ""),
    ])
    db.commit()
    db.close()


def test_a_state_file_from_before_the_index_gets_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    old_state_file(path)
    with StateStore(path) as state:
        store = AssignmentStore(state)
        # Every address and former address of every row, by its key.
        assert store.owner("hub", "SMTP", address_key("SMTP", "TED@c.example")) == "a1"
        assert store.owner("hub", "SMTP", address_key("smtp", "Older.Ted@c.example")) == "a1"
        assert store.owner("hub", "SMTP", address_key("SMTP", "kim@c.example")) == "a2"
        assert store.owner("hub", "NOTES", address_key("NOTES", "ted@exchange")) == "a3"
        # Keys are per hub and per type.
        assert store.owner("hub", "SMTP", address_key("SMTP", "sam@c.example")) is None
        assert store.owner("other", "SMTP", address_key("SMTP", "sam@c.example")) == "a4"
        assert store.owner("hub", "NOTES", address_key("NOTES", "ted@c.example")) is None
        # The rows themselves are read as before.
        assert store.get("hub", "SMTP", "a1") == Remembered(
            "ted@c.example", "ted@c.example", ("old.ted@c.example", "older.ted@c.example"))
        assert store.get("hub", "SMTP", "a9") is None
        assert store.load("hub", "SMTP") == {"a1": store.get("hub", "SMTP", "a1"),
                                             "a2": Remembered("Kim@C.example")}
    # Opened again: the index is there and is not built twice.
    with StateStore(path) as state:
        AssignmentStore(state)
        count = state.db.execute("SELECT count(*) FROM proxy_assignment_keys").fetchone()[0]
    assert count == 6


def test_the_index_follows_each_put(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as state:
        store = AssignmentStore(state)
        store.put("hub", "SMTP", "a1", Remembered("new@c.example", "new@c.example",
                                                  ("old@c.example",)))
        store.put("hub", "SMTP", "a1", Remembered("newer@c.example", "newer@c.example",
                                                  ("new@c.example",)))
        key = lambda a: address_key("SMTP", a)  # noqa: E731
        assert store.owner("hub", "SMTP", key("newer@c.example")) == "a1"
        assert store.owner("hub", "SMTP", key("new@c.example")) == "a1"
        # Dropped from the row (no longer former): no longer held.
        assert store.owner("hub", "SMTP", key("old@c.example")) is None


def run_both(tmp_path: Path, remembered: dict[str, Remembered],
             hub: list[str]) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """The same assignments, with everything loaded and with lookups in the store."""
    with StateStore(tmp_path / "state.sqlite") as state:
        store = AssignmentStore(state)
        for anchor, memo in remembered.items():
            store.put("hub", "SMTP", anchor, memo)
        loaded = Assigner("SMTP", lambda: hub, store.load("hub", "SMTP"))
        looked_up = Assigner("SMTP", lambda: hub, store.view("hub", "SMTP"))
        wanted = [("a1", "ted@c.example"), ("a2", "ted@c.example"), ("a3", "kim@c.example"),
                  ("a4", "old.kim@c.example"), ("a5", "sam@c.example"), ("a1", "ted@c.example")]
        results = []
        for rus in (loaded, looked_up):
            out = []
            for anchor, base in wanted:
                found = rus.assign(anchor, [], lambda b=base: b)
                out.append((anchor, found.address if found else None))
            results.append(out)
        assert loaded.changed == looked_up.changed
    return results[0], results[1]


def test_looking_up_gives_what_loading_everything_gives(tmp_path: Path) -> None:
    remembered = {
        "a3": Remembered("kim@c.example", "kim@c.example", ("old.kim@c.example",)),
        "a9": Remembered("sam@c.example", "sam@c.example"),
    }
    loaded, looked_up = run_both(tmp_path, remembered, ["SMTP:ted2@c.example"])
    assert loaded == looked_up
    assert loaded == [("a1", "ted@c.example"), ("a2", "ted3@c.example"),
                      ("a3", "kim@c.example"), ("a4", "old.kim2@c.example"),
                      ("a5", "sam2@c.example"), ("a1", "ted@c.example")]


def test_the_hub_is_asked_one_address_at_a_time_then_read_whole() -> None:
    asked: list[str] = []
    loads: list[int] = []
    hub = {"smtp:taken@c.example"}

    def holds(value: str) -> bool:
        asked.append(value)
        return value.casefold() in hub

    def load() -> list[str]:
        loads.append(1)
        return sorted(hub)

    rus = Assigner("SMTP", load, {}, hub_holds=holds)
    found = rus.assign("a1", [], lambda: "taken@c.example")
    assert found is not None and found.address == "taken2@c.example"
    assert asked == ["SMTP:taken@c.example", "SMTP:taken2@c.example"] and loads == []
    # Past the limit the hub's addresses are read once, as a full run does.
    for n in range(PROBE_LIMIT):
        rus.assign(f"b{n}", [], lambda n=n: f"user{n}@c.example")
    assert len(asked) == PROBE_LIMIT and loads == [1]
    found = rus.assign("c1", [], lambda: "taken@c.example")
    assert found is not None and found.address == "taken3@c.example" and loads == [1]
