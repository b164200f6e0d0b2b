"""A run's bookkeeping on disk (dirsync.sync.scratch and its users): the same
answers as the dictionaries and sets they replace, in flat memory."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from dirsync.directories.bloom import BITS
from dirsync.directories.firstseen import FirstSeen
from dirsync.entry import Entry
from dirsync.state.staterows import StateRows
from dirsync.state.store import StateRow, StateStore
from dirsync.sync.entryspool import EntrySpool
from dirsync.sync.exportitemlist import ItemList
from dirsync.sync.exportitems import _Item
from dirsync.sync.heldnames import HeldNames
from dirsync.sync.importrecord import missing_from
from dirsync.sync.importscan import HubRecord
from dirsync.sync.ownership import Claims
from dirsync.sync.scratch import (
    CACHE_KIB,
    FLUSH,
    LARGE_CACHE_KIB,
    LARGE_TABLE,
    DiskSubset,
    Scratch,
)
from dirsync.sync.scratchclaims import DiskClaims

keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)


@given(st.lists(st.tuples(keys, st.integers()), max_size=60))
def test_a_disk_map_answers_as_a_dict_does(writes: list[tuple[str, int]]) -> None:
    scratch = Scratch()
    try:
        table = scratch.map()
        expected: dict[str, int] = {}
        for number, (key, value) in enumerate(writes):
            table[key] = value
            expected[key] = value
            if number % 7 == 0:
                table.prefetch([k for k, _ in writes[number:number + 5]] + ["never"])
            assert table.get(key) == value
        assert len(table) == len(expected)
        assert list(table) == sorted(expected)
        assert dict(table.pairs()) == expected
        for key, value in expected.items():
            assert key in table and table[key] == value
        assert "never" not in table and table.get("never", 5) == 5
    finally:
        scratch.close()


@given(st.lists(st.tuples(keys, st.booleans()), max_size=400), st.integers(3, 7))
def test_a_filtered_table_grows_its_bloom_filter_and_never_misses_a_key(
        writes: list[tuple[str, bool]], first: int) -> None:
    scratch = Scratch()
    try:
        table = scratch.map(flush=16).filtered(first)      # (tiny, to grow it often)
        for key, first_only in writes:
            if first_only:
                table.put_first(key, 1)
            else:
                table[key] = 2
        written = {key for key, _ in writes}
        assert table.bloom is not None
        assert all(table.bloom.maybe(key) for key in written)
        assert all(key in table for key in written) and len(table) == len(written)

        def width_for(count: int) -> int:   # grown three bits at a time as it fills
            return next(w for w in range(first, BITS + 3, 3) if count <= 1 << (w - 3))

        # Large enough for the keys, and never grown past what the writes asked.
        assert width_for(len(written)) <= table.bloom.width <= width_for(len(writes))
    finally:
        scratch.close()


def test_a_scratch_caches_more_pages_once_a_table_is_a_full_runs() -> None:
    scratch = Scratch()
    try:
        def cache() -> int:
            return int(scratch.db.execute("PRAGMA cache_size").fetchone()[0])

        small, large = scratch.map(), scratch.set()
        for n in range(LARGE_TABLE // 2):
            small[f"k{n}"] = n
            large.add(f"k{n}")
        small.flush()
        assert cache() == -CACHE_KIB     # a change's tables, however many
        large.update(f"m{n}" for n in range(LARGE_TABLE // 2 + 1))
        large.table.flush()
        assert cache() == -LARGE_CACHE_KIB and len(large) == LARGE_TABLE + 1
    finally:
        scratch.close()


def test_prefetched_answers_follow_later_writes() -> None:
    scratch = Scratch()
    try:
        table = scratch.map()
        seen = scratch.set()
        table.prefetch(["a", "b"])
        seen.prefetch(["a"])
        assert table.get("a") is None and "a" not in seen
        table["a"] = 1
        seen.add("a")
        for number in range(FLUSH + 1):      # flushed to the table meanwhile
            table[f"k{number}"] = number
            seen.add(f"k{number}")
        assert table["a"] == 1 and "a" in seen and "b" not in table
        assert len(seen) == FLUSH + 2
    finally:
        scratch.close()


def test_put_first_keeps_the_first_value_and_names_the_others() -> None:
    scratch = Scratch()
    try:
        table = scratch.map(lambda r: (r.dn,), lambda t: HubRecord(t[0]))
        table.put_first("a", HubRecord("cn=one"))
        table.put_first("b", HubRecord("cn=two"))
        table.put_first("a", HubRecord("cn=three"))
        table.flush()
        table.put_first("b", HubRecord("cn=four"))
        table.flush()
        assert table["a"].dn == "cn=one" and table["b"].dn == "cn=two"
        assert [(k, v.dn, first.dn) for k, v, first in table.taken] == [
            ("a", "cn=three", "cn=one"), ("b", "cn=four", "cn=two")]
    finally:
        scratch.close()


def test_pairs_without_and_sorted_keys_are_set_operations_in_key_order() -> None:
    scratch = Scratch()
    try:
        ours, kept, applied = scratch.map(), scratch.map(), scratch.set()
        for key in ("d", "a", "c", "b", "e"):
            ours[key] = key.upper()
        kept["b"] = 1
        kept["x"] = 2
        applied.add("d")
        assert list(ours.pairs(without=[kept, applied.table])) == [
            ("a", "A"), ("c", "C"), ("e", "E")]
        assert list(scratch.sorted_keys(kept, applied, ours)) == ["a", "b", "c", "d", "e", "x"]
        seen = scratch.set()
        marked = DiskSubset(seen.table, 1)
        for key in ("a", "c", "e", "z"):
            seen.add(key)
        marked.add("c")
        marked.add("y")
        assert "c" in marked and "a" not in marked and "a" in seen and "y" in seen
        assert list(marked) == ["c", "y"] and len(marked) == 2
        assert list(ours.pairs(without=[marked])) == [
            ("a", "A"), ("b", "B"), ("d", "D"), ("e", "E")]
        assert list(scratch.sorted_keys(marked, applied)) == ["c", "d", "y"]
        marked.discard("c")
        assert "c" not in marked and "c" in seen
    finally:
        scratch.close()


@given(st.sets(keys, max_size=30), st.sets(keys, max_size=30))
def test_missing_from_is_a_merge_of_two_sorted_streams(left: set[str], right: set[str]
                                                       ) -> None:
    assert list(missing_from(sorted(left), sorted(right))) == sorted(left - right)


def test_state_rows_are_read_as_they_are_asked_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with StateStore(tmp_path / "state.sqlite") as state:
        for anchor in ("b", "a", "c"):
            state.put("gal", "import", anchor, StateRow(f"cn={anchor}", "h", "person"))
        state.put("other", "import", "a", StateRow("cn=other", "h", "person"))
        rows = StateRows(state, "gal", "import")
        assert list(rows) == ["a", "b", "c"] and len(rows) == 3
        rows.prefetch(["a", "z"])
        assert rows["a"] == StateRow("cn=a", "h", "person")
        assert rows.get("z") is None and "z" not in rows
        assert rows.get("c") == StateRow("cn=c", "h", "person")   # not prefetched


def test_disk_claims_answer_as_claims_do() -> None:
    scratch = Scratch()
    try:
        memory, disk = Claims(), DiskClaims(scratch)
        generator = random.Random(16)
        for number in range(3 * FLUSH):
            anchor = f"a{number % 50}"
            addresses = [f"smtp:x{generator.randrange(300)}@y" for _ in range(2)]
            memory.claim(anchor, addresses)
            disk.claim(anchor, addresses)
        for key in (f"smtp:x{n}@y" for n in range(310)):
            assert disk.first_claimant(key) == memory.first_claimant(key)
            for anchor in ("a0", "a7", "a49", "nobody"):
                assert disk.claims(anchor, key) == memory.claims(anchor, key)
    finally:
        scratch.close()


def test_held_names_ask_the_hub_records_for_names_not_placed_here() -> None:
    scratch = Scratch()
    try:
        ours = scratch.map(lambda r: (r.dn,), lambda t: HubRecord(t[0]))
        ours["a"] = HubRecord("cn=Ann,ou=Import,dc=x")
        ours["b"] = HubRecord("cn=Bob,ou=Import,dc=x")
        placed = scratch.map()
        placed["cn=new,ou=import,dc=x"] = "n"
        held = HeldNames(placed, ours, excluded={"b"})
        assert held["cn=ann,ou=import,dc=x"] == "a"
        assert "cn=bob,ou=import,dc=x" not in held          # placed again in this run
        assert held["cn=new,ou=import,dc=x"] == "n"
        held["cn=bob,ou=import,dc=x"] = "c"
        assert held["cn=bob,ou=import,dc=x"] == "c" and list(held) == ["cn=bob,ou=import,dc=x"]
    finally:
        scratch.close()


def test_first_seen_tells_repeats_before_and_after_moving_to_disk() -> None:
    seen = FirstSeen(memory_keys=4)
    try:
        assert [seen.first_time(k) for k in ("a", "b", "a")] == [True, True, False]
        assert seen._db is None
        assert [seen.first_time(k) for k in ("c", "b", "d", "e", "e")] == [
            True, False, True, True, False]
        assert seen._db is not None           # past four keys they are on disk
        assert [seen.first_time(k) for k in ("a", "f", "f", "d")] == [False, True, False, False]
        many = [f"k{n}" for n in range(10000)]
        assert all(seen.first_time(k) for k in many)
        assert not any(seen.first_time(k) for k in many[::7])
    finally:
        seen.close()


def entry_of(i: int) -> Entry:
    entry = Entry(f"cn=User {i},ou=Partner,o=Test", {"cn": [f"User {i}".encode()],
                                                      "mail": [b"a@x.example", b"b@x.example"]},
                  line=i)
    entry.digest = f"d{i}" if i % 2 else None
    return entry


def same_entry(a: Entry, b: Entry) -> bool:
    return (a.dn, a.attrs, a.line, a.digest) == (b.dn, b.attrs, b.line, b.digest) \
        and a.first("MAIL") == b.first("mail")


def test_an_entries_table_gives_back_each_entry_as_stored() -> None:
    scratch = Scratch()
    try:
        table = scratch.entries()
        stored = {f"anchor{i}": entry_of(i) for i in range(300)}
        for key, entry in stored.items():
            table[key] = entry
        assert len(table) == 300 and "anchor7" in table and "nobody" not in table
        assert same_entry(table["anchor7"], stored["anchor7"])
        table.prefetch(["anchor1", "anchor2", "nobody"])
        assert same_entry(table["anchor2"], stored["anchor2"]) and table.get("nobody") is None
        assert all(same_entry(entry, stored[key]) for key, entry in table.pairs())
        # A copy: changing what was read does not change what is stored.
        table["anchor3"].set("cn", [b"Changed"])
        assert table["anchor3"].first("cn") == "User 3"
    finally:
        scratch.close()


def test_an_entry_spool_gives_back_its_pairs_in_order_past_its_memory() -> None:
    pairs = [(f"uuid{i}", entry_of(i)) for i in range(40)]
    spool = EntrySpool(pairs[:5], memory_items=8)
    spool.extend(pairs[5:])
    try:
        assert len(spool) == 40 and bool(spool)
        for _ in range(2):
            got = list(spool)
            assert [k for k, _ in got] == [k for k, _ in pairs]
            assert all(same_entry(a, b) for (_, a), (_, b) in zip(got, pairs, strict=True))
        assert list(spool.keys()) == [k for k, _ in pairs]
        assert pairs[9] in spool and ("uuid9", entry_of(10)) not in spool
    finally:
        spool.close()


def test_an_item_list_keeps_counts_past_a_byte() -> None:
    items = ItemList(memory_items=2)
    try:
        for changes in (1, 254, 255, 300, 70_000):
            items.append(_Item("person", f"a{changes}", "modify", f"cn={changes}", None, None,
                               None, [], changes=changes, target_dn=f"cn={changes}",
                               digest="h"))
        for index in range(len(items)):
            items[index].done = items[index].changes
        items[4].done = 69_999
        assert [i.changes for i in items] == [1, 254, 255, 300, 70_000]
        assert [i.done for i in items] == [1, 254, 255, 300, 69_999]
        assert [a for a, _, _, _ in items.confirmed(frozenset())] == \
            ["a1", "a254", "a255", "a300"]
        items[3].done = 2
        assert items[3].done == 2 and items.written("person") == 3
    finally:
        items.close()
