"""The LDIF directory's store on disk gives what the in-memory store gives: the same
answers to the same changes (errors included), the same entries in the same order,
and the file written parents first. A spool reads back what was written, whatever
the sizes of its records and however many readers it has."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dirsync.directories.base import ReadOptions
from dirsync.directories.diskstore import DiskStore
from dirsync.directories.memory import MemoryStore
from dirsync.entry import Entry
from dirsync.ldif.changes import Change, Mod, rename_change
from dirsync.sync.spool import Spool

ROOT = "o=T"
NAMES = ["a", "b", "c", "A"]        # "A" is "a" in another case: the same DN
PARENTS = [ROOT, f"ou=x,{ROOT}", f"ou=y,{ROOT}", f"cn=a,ou=x,{ROOT}"]


def dn_of(name: str, parent: str) -> str:
    return f"cn={name},{parent}" if not name.startswith("ou=") else f"{name},{parent}"


dns = st.builds(dn_of, st.sampled_from([*NAMES, "ou=x", "ou=y"]), st.sampled_from(PARENTS))
adds = st.builds(lambda dn, v: Change("add", dn, attrs={"objectClass": [b"top"],
                                                         "description": [v]}),
                 dns, st.sampled_from([b"1", b"2"]))
deletes = st.builds(lambda dn: Change("delete", dn), dns)
modifies = st.builds(lambda dn, op, v: Change("modify", dn, mods=[Mod(op, "description", [v])]),
                     dns, st.sampled_from(["add", "delete", "replace"]),
                     st.sampled_from([b"1", b"2", b"3"]))
renames = st.builds(lambda old, new: rename_change(old, new), dns, dns)
changes = st.lists(st.one_of(adds, deletes, modifies, renames), max_size=25)


def contents(store: MemoryStore) -> list[tuple[str, dict[str, list[bytes]]]]:
    return [(e.dn, {k: sorted(v) for k, v in e.attrs.items()}) for e in store.read()]


@settings(max_examples=150, deadline=None)
@given(changes)
def test_the_disk_store_answers_and_holds_what_the_memory_store_does(
        sequence: list[Change]) -> None:
    memory, disk = MemoryStore(), DiskStore()
    start = [Change("add", ROOT, attrs={"objectClass": [b"organization"]}),
             Change("add", f"ou=x,{ROOT}", attrs={"objectClass": [b"organizationalUnit"]})]
    for change in [*start, *sequence]:
        mine = [(r.ok, r.error and r.error.result) for r in memory.apply([change], False)]
        theirs = [(r.ok, r.error and r.error.result) for r in disk.apply([change], False)]
        assert mine == theirs, change
    assert contents(disk) == contents(memory)
    assert len(disk) == len(memory)
    depth = [e.dn for e in disk.by_depth()]
    assert sorted(depth) == sorted(dn for dn, _ in contents(memory))
    assert [d.count(",") for d in depth] == sorted(d.count(",") for d in depth)
    for options in (ReadOptions(base=f"ou=x,{ROOT}", scope="one"),
                    ReadOptions(base=f"ou=x,{ROOT}", scope="sub"),
                    ReadOptions(base=f"cn=a,ou=x,{ROOT}", scope="base")):
        assert [e.dn for e in disk.read(options)] == [e.dn for e in memory.read(options)]
    disk.close()


def test_an_entry_read_from_the_disk_store_is_a_copy_with_its_line() -> None:
    disk = DiskStore()
    disk.add_entry(Entry(ROOT, {"objectClass": [b"organization"]}, line=7))
    first = disk.get(ROOT.upper())
    assert first is not None and first.line == 7 and first.get("objectclass") == [b"organization"]
    first.set("description", [b"changed"])
    again = disk.get(ROOT)
    assert again is not None and again.get("description") == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.binary(max_size=600_000), st.text(max_size=50)),
                max_size=40), st.integers(min_value=0, max_value=10))
def test_a_spool_reads_back_what_was_written_with_several_readers(
        records: list[object], memory_items: int) -> None:
    spool = Spool(memory_items)
    half = len(records) // 2
    for record in records[:half]:
        spool.append(record)
    early = iter(spool)
    seen = [next(early)] if half else []
    for record in records[half:]:
        spool.append(record)
    assert list(spool) == records
    assert [a for a, _ in zip(spool, spool, strict=True)] == records
    if half:
        # A reader that began before the rest was appended sees what was there then.
        assert seen + list(early) == records[:half]
    spool.close()
