"""``dirsync diff``: the change records that turn one set of entries into another.

The output, applied with ``ldapmodify`` to a server holding OLD, leaves
exactly NEW (attributes in the ignore list aside). The work is a merge-join
of two streams sorted by the hierarchical DN key of :mod:`dirsync.ldif.extsort`,
so memory stays flat however large the inputs:

- a key in NEW only is an **add**; the merge meets parents first, so adds
  come out parents first;
- a key in both is a **modify** of the attributes that differ, compared by
  each attribute's matching rule (:func:`dirsync.ldif.changes.modify_ops`);
- a key in OLD only is a **delete**; deletes are spooled to disk and written
  last, in reverse order, so children go before their parents.

With ``--key ATTR`` an entry is identified by that attribute instead of
its DN (where both sides have it), and an entry whose DN changed is a
**rename**: a modrdn (with newsuperior when it moves to another parent)
followed by the modify computed against what the server holds after the
modrdn (:func:`dirsync.ldif.changes.renamed_entry`). A rename of a non-leaf
carries its subtree along, so before the merge every OLD entry is given its
*post-rename* DN: its NEW DN when it is matched by key, else its old RDN
under its parent's post-rename DN. OLD, re-sorted by that DN (only the
entries that moved are sorted again), is then merged with NEW exactly as
without renames. Entries whose key is on one side only are matched by DN.

The key index (:mod:`dirsync.ldif.diffkeys`) lives in an SQLite file in the
work folder (two rows per keyed entry, no entry bodies), so rename
detection stays within bounded memory too. The output goes to a sink
(:mod:`dirsync.ldif.diffsinks`).

Records flowing through the merge are ``(key, line, dn, attrs_pickle,
key_value, meta)`` tuples (see :mod:`dirsync.ldif.extsort`); two entries whose
DN and pickled attributes are identical are equal without unpickling them,
which is most of any real diff.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Collection, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap.dn

from dirsync.entry import Entry
from dirsync.errors import DirsyncError, InputError
from dirsync.ldif.changes import Change, add_change, modify_ops, rename_change, renamed_entry
from dirsync.ldif.diffkeys import KeyIndex, Rename
from dirsync.ldif.diffsinks import (
    SINKS,
    ChangeSink,
    EntrySink,
    JSONSink,
    LDIFSink,
    Summary,
    TextSink,
    change_json,
    json_value,
)
from dirsync.ldif.extsort import (
    DEFAULT_RUN_BYTES,
    SEP,
    DnKeys,
    Record,
    ReverseSpool,
    SortedRuns,
    depth,
    is_below,
    parent_key,
    sort_records,
)
from dirsync.ldif.urlvalues import URLValues
from dirsync.schema import DEFAULT_DIFF_IGNORE, matcher

# One change of the plan, with the entry before it and after it where known.
Step = tuple[Change, Entry | None, Entry | None]


# Importable from here as before the sinks and the key index had modules
# of their own.
__all__ = ["SINKS", "ChangeSink", "DiffOptions", "DiffOrderError", "EntrySink", "JSONSink",
           "KeyIndex", "LDIFSink", "Rename", "Summary", "TextSink", "change_json", "diff",
           "json_value", "ldif_entries"]

# Flags in an annotated OLD record's meta (see _annotate).
MATCHED = 1   # matched by key to a NEW entry at another DN
RENAMED = 2   # needs a modrdn of its own (not just carried by a parent)
LEAF = 4      # has no children in OLD


@dataclass
class DiffOptions:
    """``key``: attribute identifying an entry across renames (None: the DN).
    ``ignore``: lower-case attribute names never compared nor written."""

    key: str | None = None
    ignore: frozenset[str] = DEFAULT_DIFF_IGNORE
    run_bytes: int = DEFAULT_RUN_BYTES
    tmpdir: str | None = None


class DiffOrderError(DirsyncError):
    """The renames found by key cannot be written in an order a server accepts."""

    hint = "run without --key: entries are then matched by DN, which always applies"


# -- pure entry-level functions ---------------------------------------------

def without(entry: Entry, ignore: Collection[str]) -> Entry:
    """``entry`` without the attributes in ``ignore`` (lower-case names)."""
    if not ignore or not any(name.lower() in ignore for name in entry.attrs):
        return entry
    return Entry(entry.dn, {k: v for k, v in entry.attrs.items() if k.lower() not in ignore},
                 entry.line)


def key_value(entry: Entry, attr: str) -> bytes | None:
    """The identity of ``entry`` by ``attr``: its values by the attribute's
    matching rule, as a set (a multi-valued key is compared whole)."""
    values = entry.get(attr)
    if not values:
        return None
    norm = matcher(attr)
    return b"\x00".join(sorted({norm(v) for v in values}))


def entry_changes(old: Entry | None, new: Entry | None, *,
                  ignore: Collection[str] = DEFAULT_DIFF_IGNORE) -> list[Change]:
    """The changes that turn ``old`` into ``new`` at the same DN (either may be None)."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [add_change(without(new, ignore))]
    if new is None:
        return [Change("delete", old.dn)]
    mods = modify_ops(old, new, ignore=ignore)
    return [Change("modify", new.dn, mods=mods)] if mods else []


def rename_changes(old: Entry, current_dn: str, new: Entry, *,
                   ignore: Collection[str] = DEFAULT_DIFF_IGNORE,
                   moved: bool = False) -> list[Change]:
    """A modrdn of ``old`` (now at ``current_dn``) to ``new.dn``, then the
    modify against what the server holds after it. ``moved``: the modrdn
    was already written (only the modify is wanted)."""
    out = [] if moved else [rename_change(current_dn, new.dn)]
    mods = modify_ops(renamed_entry(old, new.dn), new, ignore=ignore)
    if mods:
        out.append(Change("modify", new.dn, mods=mods))
    return out


# -- reading sides ---------------------------------------------------------

def _entry(record: Record) -> Entry:
    return Entry(record[2], pickle.loads(record[3]), record[1])


def _records(entries: Iterable[Entry], name: str, keys: DnKeys, key_attr: str | None,
             rows: list[tuple[bytes | None, bytes, str, int]] | None,
             index: KeyIndex | None, side: str) -> Iterator[Record]:
    dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
    for seq, entry in enumerate(entries, 1):
        line = entry.line if entry.line is not None else seq
        try:
            skey = keys.key(entry.dn)
        except ValueError as exc:
            raise InputError(str(exc), path=name, line=entry.line, field="dn") from exc
        kv = key_value(entry, key_attr) if key_attr else None
        if rows is not None and index is not None:
            rows.append((kv, skey.encode("utf-8"), entry.dn, line))
            if len(rows) >= 10000:
                index.insert(side, rows)
                rows.clear()
        yield skey, line, entry.dn, dumps(entry.attrs, protocol), kv, None
    if rows and index is not None:
        index.insert(side, rows)
        rows.clear()


def _unique(stream: Iterable[Record], name: str) -> Iterator[Record]:
    """A sorted stream, refusing two entries with the same DN."""
    prev: Record | None = None
    for record in stream:
        if prev is not None and record[0] == prev[0]:
            raise InputError(f"duplicate entry {record[2]!r} (also at line {prev[1]})",
                             path=name, line=record[1], field="dn")
        prev = record
        yield record


# -- post-rename DNs -------------------------------------------------------

def head_rdns(dn: str, count: int) -> str:
    """The first ``count`` RDNs of ``dn``, as written (re-escaped if needed)."""
    if "\\" not in dn and '"' not in dn:
        return ",".join(p.strip() for p in dn.split(",", count)[:count])
    return ldap.dn.dn2str(ldap.dn.str2dn(dn)[:count])


def _lookahead(stream: Iterable[Record]) -> Iterator[tuple[Record, Record | None]]:
    it = iter(stream)
    current = next(it, None)
    while current is not None:
        following = next(it, None)
        yield current, following
        current = following


def _annotate(old: Iterable[Record], index: KeyIndex) -> Iterator[Record]:
    """OLD records (in OLD order) re-keyed by their post-rename DN.

    meta = (flags, old key, post-rename DN). The renames found are stored in
    the index for the planner.
    """
    moves = index.moves()
    move = next(moves, None)
    stack: list[tuple[str, str, str]] = []  # ancestors: (old key, post key, post DN)
    for record, following in _lookahead(old):
        skey, dn, kv = record[0], record[2], record[4]
        while stack and not is_below(skey, stack[-1][0]):
            stack.pop()
        if stack:
            a_old, a_post, a_dn = stack[-1]
            follow = a_post + skey[len(a_old):]
        else:
            follow = skey
        while move is not None and move[0] < skey:
            move = next(moves, None)
        target: tuple[str, str] | None = None
        if move is not None and move[0] == skey:
            target = (move[1], move[2])
        elif follow != skey and kv is not None:
            # Matched by key at the same DN, but a parent moved away from it.
            new_dn = index.new_dn(kv)
            if new_dn is not None:
                target = (skey, new_dn)
        flags = 0 if following is not None and is_below(following[0], skey) else LEAF
        if target is not None:
            post_key, post_dn = target
            flags |= MATCHED
            if post_key != follow:
                flags |= RENAMED
                index.add_rename(Rename(skey, post_key, post_dn, dn))
        else:
            post_key = follow
            post_dn = dn
            if follow != skey:
                post_dn = f"{head_rdns(dn, depth(skey) - depth(a_old))},{a_dn}"
        stack.append((skey, post_key, post_dn))
        yield post_key, record[1], dn, record[3], kv, (flags, skey, post_dn)


def _reorder(annotated: Iterable[Record], workdir: Path, run_bytes: int) -> Iterator[Record]:
    """The annotated OLD stream in post-rename order: entries that kept their
    key are still in order; only the moved ones are sorted again."""
    kept = SortedRuns(workdir, "old-kept", run_bytes)
    moved = SortedRuns(workdir, "old-moved", run_bytes)
    try:
        for record in annotated:
            (kept if record[0] == record[5][1] else moved).add(record)
    finally:
        kept.close()
        moved.close()
    return heapq.merge(iter(kept), iter(moved))


# -- the merge ---------------------------------------------------------------

def _join(old: Iterable[Record], new: Iterable[Record]
          ) -> Iterator[tuple[str, list[Record], Record | None]]:
    """(key, OLD records at key, NEW record at key or None) in key order.

    OLD may hold more than one record at a key when renames reuse a DN
    (the planner sorts that out); NEW never does.
    """
    old_it, new_it = iter(old), iter(new)
    o, n = next(old_it, None), next(new_it, None)
    while o is not None or n is not None:
        if o is None:
            assert n is not None
            key = n[0]
        elif n is None or o[0] < n[0]:
            key = o[0]
        else:
            key = n[0]
        group = []
        while o is not None and o[0] == key:
            group.append(o)
            o = next(old_it, None)
        if n is not None and n[0] == key:
            yield key, group, n
            n = next(new_it, None)
        else:
            yield key, group, None


def _flags(record: Record) -> int:
    return record[5][0] if record[5] is not None else 0


class _Planner:
    """Walks the merge in key order and says what to write.

    Invariant: when the merge is at key ``now``, every NEW entry with a
    smaller key is in place (added, renamed, modified), so a parent is
    always in place before its children arrive.
    """

    def __init__(self, ignore: frozenset[str], index: KeyIndex | None,
                 deletes: ReverseSpool, keep_deleted: bool = False) -> None:
        self.ignore = ignore
        # Spool each deleted entry's attributes too (for a sink that shows them).
        self.keep_deleted = keep_deleted
        self.index = index if index is not None and index.renamed else None
        self.deletes = deletes
        self.early: set[str] = set()  # old keys of renamed entries moved before their turn
        self.deleted: set[str] = set()  # old keys of entries deleted before the end

    def run(self, old: Iterable[Record], new: Iterable[Record]) -> Iterator[Step]:
        """Each change with the entry before it and after it, where known."""
        for now, group, n in _join(old, new):
            if n is None:
                # Written last, children first; the DN is where the entry
                # is by then (carried along by any renamed parent).
                for o in group:
                    dn = o[5][2] if o[5] is not None else o[2]
                    self.deletes.add((dn, o[3]) if self.keep_deleted else dn)
                continue
            if not group:
                if self.index is not None:
                    yield from self._make_room(now, now, None, frozenset())
                yield add_change(without(_entry(n), self.ignore)), None, None
                continue
            o = group[0]
            if len(group) > 1:
                o = yield from self._settle(group)
            if _flags(o) & RENAMED:
                old_key = o[5][1]
                moved = old_key in self.early
                current = ""
                if not moved:
                    yield from self._make_room(now, now, old_key, frozenset())
                    current_key, current = self._current(old_key, o[2], now)
                    moved = current_key == now  # carried there already
                old_e, new_e = _entry(o), _entry(n)
                for change in rename_changes(old_e, current, new_e, ignore=self.ignore,
                                             moved=moved):
                    # The modify after a modrdn is against what the modrdn left.
                    yield change, (old_e if change.kind == "modrdn"
                                   else renamed_entry(old_e, new_e.dn)), new_e
            elif o[3] != n[3]:
                old_e, new_e = _entry(o), _entry(n)
                for change in entry_changes(old_e, new_e, ignore=self.ignore):
                    yield change, old_e, new_e

    def _settle(self, group: list[Record]) -> Generator[Step, None, Record]:
        """Several OLD entries end up at one DN: one renamed there by key, the
        others unmatched. Those go first, if they can (leaves only)."""
        matched = [r for r in group if _flags(r) & MATCHED]
        others = [r for r in group if not _flags(r) & MATCHED]
        if len(matched) != 1 or any(not _flags(r) & LEAF for r in others):
            names = ", ".join(repr(r[2]) for r in group)
            raise DiffOrderError(f"entries {names} all end up at one DN, and the one "
                                 "to delete there has children")
        for record in others:
            self.deleted.add(record[5][1])
            yield Change("delete", record[5][2]), without(_entry(record), self.ignore), None
        return matched[0]

    def _gone(self, r: Rename, now: str) -> bool:
        """Whether a renamed entry has already been moved to its new DN."""
        return r.new_key < now or r.old_key in self.early

    def _current(self, old_key: str, old_dn: str, now: str) -> tuple[str, str]:
        """Where an OLD entry not yet renamed is at key ``now``: under the
        nearest renamed ancestor that has already moved, if any."""
        assert self.index is not None
        parts = old_key.split(SEP)
        for k in range(len(parts) - 1, 0, -1):
            ancestor = SEP.join(parts[:k])
            r = self.index.rename_of(ancestor)
            if r is not None and self._gone(r, now):
                return (r.new_key + old_key[len(ancestor):],
                        f"{head_rdns(old_dn, len(parts) - k)},{r.new_dn}")
        return old_key, old_dn

    def _occupant(self, place: str, now: str) -> str | None:
        """The OLD key of the entry at ``place`` at key ``now``, if any."""
        assert self.index is not None
        candidate = place
        parts = place.split(SEP)
        for k in range(len(parts) - 1, 0, -1):
            # The nearest ancestor DN some renamed entry has moved to: what
            # is below it now came along from that entry's old subtree.
            landed = self.index.rename_to(SEP.join(parts[:k]))
            if landed is not None and self._gone(landed, now):
                candidate = landed.old_key + place[len(landed.new_key):]
                break
        if candidate in self.deleted or not self.index.old_at(candidate):
            return None
        r = self.index.rename_of(candidate)
        if r is not None and self._gone(r, now):
            return None
        return candidate if self._current(candidate, "", now)[0] == place else None

    def _make_room(self, place: str, now: str, me: str | None,
                   moving: frozenset[str]) -> Iterator[Step]:
        """Before an entry arrives at ``place``: a renamed entry still sitting
        there (its own turn comes later) is moved to its new DN now."""
        assert self.index is not None
        occupant = self._occupant(place, now)
        if occupant is None or occupant == me:
            return
        y = self.index.rename_of(occupant)
        if y is None:
            raise DiffOrderError(f"{place.split(SEP)[-1]!r} under the same parent is both "
                                 "left by one entry and taken by another")
        if y.old_key in moving:
            raise DiffOrderError(f"renames by key form a cycle through {y.old_dn!r}: "
                                 "it cannot be written without a temporary name")
        target_parent = parent_key(y.new_key)
        if target_parent and target_parent >= now:
            raise DiffOrderError(f"{y.old_dn!r} must leave its DN before its new parent "
                                 f"exists (renamed to {y.new_dn!r})")
        yield from self._make_room(y.new_key, now, None, moving | {y.old_key})
        current = self._current(y.old_key, y.old_dn, now)[1]
        self.early.add(y.old_key)
        yield rename_change(current, y.new_dn), None, None


# -- the whole diff ----------------------------------------------------------

def diff(old: Iterable[Entry], new: Iterable[Entry], sink: ChangeSink, *,
         old_name: str = "OLD", new_name: str = "NEW",
         options: DiffOptions | None = None) -> Summary:
    """Write to ``sink`` the changes that turn ``old`` into ``new``.

    Both inputs are read to the end before the first change is written (into
    sorted runs in a temp folder), so an input error leaves ``sink`` untouched.
    """
    try:
        summary = _diff(old, new, sink, old_name, new_name, options or DiffOptions())
    except BaseException:
        # A sink that keeps parts (the HTML page) lets them go.
        abort = getattr(sink, "abort", None)
        if abort is not None:
            abort()
        raise
    sink.close(summary)
    return summary


def _diff(old: Iterable[Entry], new: Iterable[Entry], sink: ChangeSink, old_name: str,
          new_name: str, opts: DiffOptions) -> Summary:
    key_attr = opts.key if opts.key and opts.key.lower() != "dn" else None
    summary = Summary()
    with tempfile.TemporaryDirectory(prefix="dirsync-diff-", dir=opts.tmpdir) as tmp:
        work = Path(tmp)
        index = (KeyIndex(work / "keys.sqlite", {"old": old_name, "new": new_name})
                 if key_attr else None)
        try:
            keys = DnKeys()
            sides = []
            for side, entries, name in (("old", old, old_name), ("new", new, new_name)):
                rows: list[tuple[bytes | None, bytes, str, int]] | None = (
                    [] if index is not None else None)
                runs = sort_records(_records(entries, name, keys, key_attr, rows, index, side),
                                    work, prefix=side, run_bytes=opts.run_bytes)
                if not runs.in_order:
                    summary.sorted_inputs.append(name)
                sides.append(runs)
            old_runs, new_runs = sides
            summary.old_entries, summary.new_entries = old_runs.count, new_runs.count
            if index is not None:
                index.finish()
            old_stream: Iterable[Record] = _unique(old_runs, old_name)
            new_stream = _unique(new_runs, new_name)
            if index is not None and index.has_moves():
                old_stream = _reorder(_annotate(old_stream, index), work, opts.run_bytes)
            deletes = ReverseSpool(work, "deletes")
            write_entry = getattr(sink, "write_entry", None)
            try:
                planner = _Planner(opts.ignore, index, deletes,
                                   keep_deleted=write_entry is not None)
                for change, before, after in planner.run(old_stream, new_stream):
                    summary.count(change)
                    if write_entry is not None:
                        write_entry(change, before, after)
                    else:
                        sink.write(change)
                for item in deletes:
                    if write_entry is not None:
                        dn, attrs = item
                        change = Change("delete", dn)
                        summary.count(change)
                        write_entry(change, without(Entry(dn, pickle.loads(attrs)),
                                                    opts.ignore), None)
                    else:
                        change = Change("delete", item)
                        summary.count(change)
                        sink.write(change)
            finally:
                deletes.close()
        finally:
            if index is not None:
                index.close()
    return summary


def ldif_entries(path: str, name: str | None = None,
                 url_values: URLValues | None = None) -> Iterator[Entry]:
    """The content records of an LDIF file; a change record is an input error."""
    from dirsync.ldif.io import LDIFReader

    with LDIFReader(path, name=name, url_values=url_values) as reader:
        for record in reader:
            if not isinstance(record, Entry):
                raise InputError(f"a {record.kind} change record: diff compares content "
                                 "records (entries)", path=reader.name, line=record.line,
                                 field="changetype")
            yield record
