"""The SQLite state store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dirsync.state.store import StateRow, StateStore


def test_entries_put_drop_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "var" / "state.sqlite"
    with StateStore(path) as state:
        state.put("po1", "import", "a", StateRow("cn=A,o=x", "h1", "person"))
        state.put("po1", "import", "b", StateRow("cn=B,o=x", "h2", "list"))
        state.put("po1", "export", "a", StateRow("cn=A,o=y", "h3", "person"))
        state.put("po2", "import", "a", StateRow("cn=A,o=z", "h4", "person"))
        state.put("po1", "import", "a", StateRow("cn=A2,o=x", "h5", "person"))
        state.drop("po1", "import", "b")
    with StateStore(path) as state:
        assert state.entries("po1") == {"a": StateRow("cn=A2,o=x", "h5", "person")}
        assert state.entries("po1", "export") == {"a": StateRow("cn=A,o=y", "h3", "person")}
        assert state.count("po2") == 1
        state.replace_all("po1", "import", [("c", StateRow("cn=C,o=x", "h6", "group"))])
        assert state.entries("po1") == {"c": StateRow("cn=C,o=x", "h6", "group")}
        state.forget("po1")
        assert state.entries("po1") == {} and state.count("po2") == 1


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.sqlite") as state:
        with pytest.raises(RuntimeError), state.transaction():
            state.put("po1", "import", "a", StateRow("cn=A", "h", "person"))
            state.put("po1", "import", "b", StateRow("cn=B", "h", "person"))
            raise RuntimeError("killed")
        assert state.entries("po1") == {}


def test_a_commit_is_visible_to_another_process_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with StateStore(path) as state:
        state.put("po1", "import", "a", StateRow("cn=A", "h", "person"))
        # Another connection (as another process would) sees the committed row
        # while this one is still open: nothing waits for a close or checkpoint.
        other = sqlite3.connect(path)
        assert other.execute("SELECT anchor FROM entries").fetchall() == [("a",)]
        other.close()


def test_fingerprints_cursors_and_runs(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.fingerprint("po1") is None
        state.set_fingerprint("po1", "import", "f1")
        state.set_fingerprint("po1", "import", "f2")
        assert state.fingerprint("po1") == "f2"
        assert state.cursor("po1", "import", "cookie") is None
        state.set_cursor("po1", "import", "cookie", "rid=001,csn=x")
        assert state.cursor("po1", "import", "cookie") == "rid=001,csn=x"
        first = state.start_run("po1", "import", "full", False)
        state.end_run(first, "ok", {"add": 3}, "var/reports/r1")
        second = state.start_run("po1", "import", "incremental", True)
        state.start_run("po2", "import", "full", False)
        runs = state.runs("po1")
        assert [r.id for r in runs] == [second, first]
        assert runs[0].outcome is None and runs[0].as_dict()["status"] == "running"
        assert runs[1].counts == {"add": 3} and runs[1].duration is not None
        assert runs[1].as_dict()["report"] == "var/reports/r1"
        assert len(state.runs(limit=2)) == 2
        assert state.connections() == ["po1", "po2"]


def test_a_new_state_file_opened_by_many_at_once(tmp_path: Path) -> None:
    # The connections of one schedule start on the same tick, each opening
    # the state file; switching a new file to WAL must not fail any of them.
    import threading

    for round_ in range(40):
        path = tmp_path / f"r{round_}" / "state.sqlite"
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def open_it() -> None:
            barrier.wait()
            try:
                StateStore(path).close()
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"round {round_}: {errors[0]!r}"
