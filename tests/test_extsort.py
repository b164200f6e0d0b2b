"""Hierarchical DN keys, external sort in bounded runs, the reverse spool."""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path

import pytest

from dirsync.entry import Entry
from dirsync.ldif.extsort import (
    FAN_IN,
    DnKeys,
    ReverseSpool,
    SortedRuns,
    dn_key,
    sort_entries,
    sort_ldif,
)
from dirsync.ldif.io import LDIFWriter, read_ldif

B = "dc=example,dc=org"


@pytest.mark.parametrize(("a", "b"), [
    (f"CN=Ted Bremer, OU=People,{B}", f"cn=ted bremer,ou=people,{B}"),
    (f"cn=a\\,b,{B}", f"cn=a\\2Cb,{B}"),
    (f"cn=a+uid=b,{B}", f"UID=b+CN=A,{B}"),
    (f"cn=Straße,{B}", f"cn=STRASSE,{B}"),
    (f"cn=\\ lead,{B}", f"cn=\\20lead,{B}"),
])
def test_equal_dns_have_equal_keys(a: str, b: str) -> None:
    keys = DnKeys()
    assert keys.key(a) == keys.key(b) == dn_key(a)


@pytest.mark.parametrize("dn", [f"cn=a,ou=b,{B}", f"cn=a b  c,{B}", f"uid=ü.x-1@y,{B}"])
def test_fast_path_agrees_with_the_rfc4514_parse(dn: str) -> None:
    keys = DnKeys()
    assert keys.key(dn) == keys._slow(dn)


def test_invalid_dn_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a valid DN"):
        DnKeys().key("cn=#zz,dc=x")


def test_parents_sort_right_before_their_subtrees() -> None:
    dns = [B, f"ou=a,{B}", f"ou=a b,{B}", f"ou=a-,{B}", f"cn=x,ou=a,{B}", f"cn=y,ou=a b,{B}",
           f"cn=z,cn=x,ou=a,{B}", f"ou=A\\,b,{B}", f"cn=q,ou=A\\,b,{B}", f"ou=\\00,{B}",
           f"cn=1,ou=\\00,{B}", f"ou=a+cn=1,{B}", f"cn=c,ou=a+cn=1,{B}"]
    random.Random(1).shuffle(dns)
    keys = DnKeys()
    ordered = sorted(dns, key=keys.key)
    for i, dn in enumerate(ordered):
        subtree = [d for d in ordered if keys.key(d).startswith(keys.key(dn) + "\x00")]
        # The subtree follows the entry at once, with nothing else in between.
        assert ordered[i + 1:i + 1 + len(subtree)] == [d for d in ordered if d in subtree]
    assert ordered[0] == B


def records(keys: list[str]) -> list[tuple[str, int, str, bytes, None, None]]:
    return [(k, i, f"dn{i}", pickle.dumps(i), None, None) for i, k in enumerate(keys)]


def test_sorted_input_is_one_run_written_as_read(tmp_path: Path) -> None:
    runs = SortedRuns(tmp_path, run_bytes=1).fill(records([f"k{i:03d}" for i in range(100)]))
    assert runs.in_order and len(runs.runs) == 1 and runs.count == 100
    assert [r[0] for r in runs] == [f"k{i:03d}" for i in range(100)]


@pytest.mark.parametrize("run_bytes", [1, 2000, 1 << 20])
def test_unsorted_input_is_sorted_in_bounded_runs(tmp_path: Path, run_bytes: int) -> None:
    keys = [f"k{i:04d}" for i in range(3 * FAN_IN + 5)]
    shuffled = keys[:]
    random.Random(2).shuffle(shuffled)
    runs = SortedRuns(tmp_path, run_bytes=run_bytes).fill(records(shuffled))
    assert not runs.in_order
    if run_bytes == 1:
        assert len(runs.runs) > FAN_IN  # one record per run: merged in rounds
    out = list(runs)
    assert [r[0] for r in out] == keys
    assert sorted(pickle.loads(r[3]) for r in out) == list(range(len(keys)))
    assert len(runs.runs) <= FAN_IN and [r[0] for r in runs] == keys  # iterable again


def test_records_sharing_objects_survive_many_batches(tmp_path: Path) -> None:
    # A record may refer to one object twice (its DN in its meta): pickle
    # back-references must resolve within their own batch.
    recs = []
    for i in range(2000):
        dn = f"uid=u{i:05d},{B}"
        recs.append((f"k{i:05d}", i, dn, b"", None, (0, f"k{i:05d}", dn)))
    runs = SortedRuns(tmp_path).fill(recs)
    assert all(r[5][2] == r[2] for r in runs)


def test_equal_keys_keep_input_order(tmp_path: Path) -> None:
    runs = SortedRuns(tmp_path, run_bytes=1).fill(records(["b", "a", "b", "a"]))
    assert [(r[0], r[1]) for r in runs] == [("a", 1), ("a", 3), ("b", 0), ("b", 2)]


def test_sort_entries_keeps_attributes_and_lines(tmp_path: Path) -> None:
    entries = [Entry(f"uid=u{i},ou=p,{B}", {"uid": [f"u{i}".encode()]}, line=i * 3 + 1)
               for i in range(50)]
    entries.append(Entry(f"ou=p,{B}", {"ou": [b"p"]}, line=999))
    random.Random(3).shuffle(entries)
    out = list(sort_entries(entries, run_bytes=1, tmpdir=str(tmp_path)))
    assert out[0].dn == f"ou=p,{B}" and out[0].line == 999
    assert sorted(e.dn for e in out) == sorted(e.dn for e in entries)
    assert all(e.get("uid") == [e.dn.split(",")[0][4:].encode()] for e in out[1:])
    assert list(tmp_path.iterdir()) == []


def test_sort_ldif(tmp_path: Path) -> None:
    source = tmp_path / "in.ldif"
    with open(source, "w", encoding="utf-8") as stream:
        writer = LDIFWriter(stream)
        writer.entry(Entry(f"cn=x,ou=a,{B}", {"cn": [b"x"], "jpegPhoto": [b"\xff\x00"]}))
        writer.entry(Entry(f"ou=a,{B}", {"ou": [b"a"]}))
        writer.entry(Entry(B, {"dc": [b"example"]}))
    out = io.StringIO()
    assert sort_ldif(source, out, run_bytes=1) == 3
    sorted_path = tmp_path / "out.ldif"
    sorted_path.write_text(out.getvalue())
    back = list(read_ldif(sorted_path))
    assert [r.dn for r in back] == [B, f"ou=a,{B}", f"cn=x,ou=a,{B}"]
    assert isinstance(back[2], Entry) and back[2].get("jpegPhoto") == [b"\xff\x00"]


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_reverse_spool_gives_items_back_last_first(tmp_path: Path, chunk: int) -> None:
    spool = ReverseSpool(tmp_path, chunk=chunk)
    for i in range(10):
        spool.add(i)
    assert list(spool) == list(range(9, -1, -1)) and spool.count == 10
