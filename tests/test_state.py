"""The SQLite state store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dirsync.state import StateRow, StateStore


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
