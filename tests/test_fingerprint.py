"""File change detection, without a server."""

from __future__ import annotations

import os
from pathlib import Path

from dirsync.state.fingerprints import FileFingerprint, check


def test_first_look_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "gal.csv"
    path.write_text("a,b\n")
    changed, fp = check(path, None)
    assert changed and fp.size == 4 and len(fp.sha256) == 64


def test_same_size_and_time_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "gal.csv"
    path.write_text("a,b\n")
    _, fp = check(path, None)
    # A recorded hash that does not match proves the file was not hashed again
    # (the fingerprint was taken well after the file's last change).
    recorded = FileFingerprint(fp.size, fp.mtime_ns, "0" * 64, fp.mtime_ns + 10**10)
    changed, again = check(path, recorded)
    assert not changed and again is recorded


def test_a_change_in_the_same_tick_as_the_fingerprint_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "gal.csv"
    path.write_text("a,b\n")
    _, fp = check(path, None)
    # Rewritten with the same size and, as on a coarse clock, the same time.
    path.write_text("a,c\n")
    os.utime(path, ns=(fp.mtime_ns, fp.mtime_ns))
    changed, now = check(path, fp)
    assert changed and now.sha256 != fp.sha256


def test_touched_but_same_content_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "gal.csv"
    path.write_text("a,b\n")
    _, fp = check(path, None)
    os.utime(path, ns=(fp.mtime_ns + 5_000_000_000, fp.mtime_ns + 5_000_000_000))
    changed, now = check(path, fp)
    assert not changed and now.mtime_ns != fp.mtime_ns and now.sha256 == fp.sha256


def test_new_content_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "gal.csv"
    path.write_text("a,b\n")
    _, fp = check(path, None)
    path.write_text("a,c\n")
    os.utime(path, ns=(fp.mtime_ns + 1, fp.mtime_ns + 1))
    changed, now = check(path, fp)
    assert changed and now.sha256 != fp.sha256


def test_round_trip_through_text() -> None:
    fp = FileFingerprint(3, 42, "ab" * 32, 99)
    assert FileFingerprint.loads(fp.dumps()) == fp
    assert FileFingerprint.loads("not json") is None and FileFingerprint.loads(None) is None
