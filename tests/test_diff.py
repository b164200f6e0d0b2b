"""The diff engine and ``dirsync diff``, without a server.

Every diff here is also replayed onto an in-memory store that refuses what a
server refuses (an add under a missing parent, a delete of a non-leaf, an
add of a value already there), which must then hold exactly NEW.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.directories.memory import MemoryStore
from dirsync.entry import Entry, normalize_dn, parent_dn
from dirsync.errors import InputError
from dirsync.ldif.changes import Change, Mod
from dirsync.ldif.diff import DiffOptions, DiffOrderError, Summary, diff
from dirsync.ldif.io import LDIFWriter, read_ldif
from dirsync.schema import DEFAULT_DIFF_IGNORE

B = "dc=example,dc=org"


def E(dn: str, **attrs: str | bytes | list[str] | list[bytes]) -> Entry:
    """An entry; ``objectClass`` defaults to inetOrgPerson, ``_`` in names is ``-``."""
    entry = Entry(dn)
    if "objectClass" not in attrs:
        entry.add("objectClass", [b"inetOrgPerson"])
    for name, value in attrs.items():
        values = value if isinstance(value, list) else [value]
        if not values:
            continue
        entry.add(name.replace("_", "-"),
                  [v.encode() if isinstance(v, str) else v for v in values])
    return entry


def OU(dn: str, **attrs: str | list[str]) -> Entry:
    name = dn.split(",", 1)[0].split("=", 1)[1]
    return E(dn, objectClass="organizationalUnit", ou=name, **attrs)


class ListSink:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.summary: Summary | None = None

    def write(self, change: Change) -> None:
        self.changes.append(change)

    def close(self, summary: Summary) -> None:
        self.summary = summary


def run(old: Iterable[Entry], new: Iterable[Entry], *, key: str | None = None,
        ignore: frozenset[str] = DEFAULT_DIFF_IGNORE, run_bytes: int = 1 << 20,
        check: bool = True) -> list[Change]:
    old, new = list(old), list(new)
    sink = ListSink()
    diff(old, new, sink, options=DiffOptions(key=key, ignore=ignore, run_bytes=run_bytes))
    if check:
        assert_leaves(old, new, sink.changes, ignore)
    return sink.changes


def state(entries: Iterable[Entry], ignore: frozenset[str]) -> dict[str, dict[str, list[bytes]]]:
    return {normalize_dn(e.dn): {k.lower(): sorted(v) for k, v in e.attrs.items()
                                 if k.lower() not in ignore}
            for e in entries}


def assert_leaves(old: list[Entry], new: list[Entry], changes: list[Change],
                  ignore: frozenset[str] = DEFAULT_DIFF_IGNORE) -> None:
    """Replaying ``changes`` onto OLD must succeed change by change and give NEW."""
    store = MemoryStore()
    for entry in sorted(old, key=lambda e: len(e.dn.split(","))):
        store.put(entry.copy())
    for change in changes:
        store.apply_one(change)  # raises on what a server would refuse
    assert state(store.entries.values(), ignore) == state(new, ignore)


def kinds(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.kind, c.dn) for c in changes]


def mods(changes: list[Change]) -> list[tuple[str, str, list[bytes]]]:
    (change,) = changes
    assert change.kind == "modify"
    return [(m.op, m.attr, m.values) for m in change.mods]


# -- attributes ---------------------------------------------------------------

P = f"uid=ted,ou=People,{B}"


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param(E(P, uid="ted", cn="Ted"), E(P, uid="ted", cn="Ted", mail="ted@x.org"),
                 [("add", "mail", [b"ted@x.org"])], id="attribute-added"),
    pytest.param(E(P, uid="ted", cn="Ted", mail="ted@x.org"), E(P, uid="ted", cn="Ted"),
                 [("delete", "mail", [])], id="attribute-deleted"),
    pytest.param(E(P, uid="ted", sn="Bremer"), E(P, uid="ted", sn="Brehmer"),
                 [("replace", "sn", [b"Brehmer"])], id="value-replaced"),
    pytest.param(E(P, uid="ted", cn="ted bremer"), E(P, uid="ted", cn="Ted Bremer"),
                 [("replace", "cn", [b"Ted Bremer"])], id="case-only-respelling"),
    pytest.param(E(P, uid="ted", mail="Ted@X.org"), E(P, uid="ted", MAIL="ted@x.org"),
                 [("replace", "MAIL", [b"ted@x.org"])], id="names-case-insensitive"),
    pytest.param(E(P, uid="ted", labeledURI=["http://X", "http://y"]),
                 E(P, uid="ted", labeledURI=["http://x", "http://y"]),
                 [("delete", "labeledURI", [b"http://X"]), ("add", "labeledURI", [b"http://x"])],
                 id="exact-match-attribute-case-change"),
    pytest.param(E(P, uid="ted", telephoneNumber="+1 555 0100"),
                 E(P, uid="ted", telephoneNumber="+1 555 0100"), [], id="unchanged"),
    pytest.param(E(P, uid="ted", mail=["a@x", "b@x", "c@x"]),
                 E(P, uid="ted", mail=["c@x", "a@x", "d@x"]),
                 [("delete", "mail", [b"b@x"]), ("add", "mail", [b"d@x"])], id="multi-valued"),
    pytest.param(E(P, uid="ted", mail=["a@x", "b@x"]), E(P, uid="ted", mail=["b@x", "a@x"]),
                 [], id="multi-valued-reordered"),
    pytest.param(E(P, uid="ted", jpegPhoto=b"\xff\xd8\x00old"),
                 E(P, uid="ted", jpegPhoto=b"\xff\xd8\x00new"),
                 [("replace", "jpegPhoto", [b"\xff\xd8\x00new"])], id="binary-value"),
    pytest.param(E(P, uid="ted", member=f"cn=A,{B}"), E(P, uid="ted", member=f"CN=a, {B}"),
                 [("replace", "member", [f"CN=a, {B}".encode()])], id="dn-value-respelled"),
])
def test_attribute_changes(old: Entry, new: Entry,
                           expected: list[tuple[str, str, list[bytes]]]) -> None:
    changes = run([old], [new])
    if not expected:
        assert changes == []
    else:
        assert mods(changes) == expected


def test_ignore_list_defaults_to_operational_attributes() -> None:
    old = E(P, uid="ted", modifyTimestamp="20240101000000Z", entryCSN="1#000")
    new = E(P, uid="ted", modifyTimestamp="20250101000000Z", entryCSN="2#000")
    assert run([old], [new]) == []
    compared = run([old], [new], ignore=frozenset(), check=False)
    assert {m.attr for m in compared[0].mods} == {"modifyTimestamp", "entryCSN"}


def test_ignored_attributes_are_neither_compared_nor_added() -> None:
    ignore = DEFAULT_DIFF_IGNORE | {"description"}
    old = [E(P, uid="ted", description="old")]
    new = [E(P, uid="ted", description="new"),
           E(f"uid=ann,ou=People,{B}", uid="ann", description="x", entryUUID="1234",
             createTimestamp="20250101000000Z")]
    changes = run(old, new, ignore=ignore)
    (add,) = changes
    assert add.kind == "add" and set(add.attrs or {}) == {"objectClass", "uid"}


def test_rdn_values_are_not_deleted_by_a_modify() -> None:
    # NEW lacks the value its own RDN names; a server would refuse deleting it.
    old = E(f"cn=Ted,ou=People,{B}", cn=["Ted", "Teddy"])
    new = E(f"cn=Ted,ou=People,{B}", cn="Teddy")
    assert run([old], [new], check=False) == []


# -- adds and deletes -----------------------------------------------------------

def test_adds_come_parents_first_whatever_the_input_order() -> None:
    old = [OU(f"ou=People,{B}")]
    new = [E(f"uid=c,ou=Sub,ou=Team,ou=People,{B}", uid="c"),
           OU(f"ou=Sub,ou=Team,ou=People,{B}"), OU(f"ou=Team,ou=People,{B}"),
           OU(f"ou=People,{B}"), E(f"uid=d,ou=Team,ou=People,{B}", uid="d")]
    changes = run(old, new)
    assert all(c.kind == "add" for c in changes)
    order = [normalize_dn(c.dn) for c in changes]
    for i, dn in enumerate(order):
        assert normalize_dn(parent_dn(dn)) not in order[i + 1:]
    assert order[0] == normalize_dn(f"ou=Team,ou=People,{B}")


def test_nested_deletes_come_children_first() -> None:
    tree = [OU(f"ou=People,{B}"), OU(f"ou=Gone,ou=People,{B}"),
            OU(f"ou=Sub,ou=Gone,ou=People,{B}"), E(f"uid=a,ou=Sub,ou=Gone,ou=People,{B}", uid="a"),
            E(f"uid=b,ou=Gone,ou=People,{B}", uid="b"), E(f"uid=c,ou=People,{B}", uid="c")]
    changes = run(tree, [tree[0], tree[-1]])
    assert [c.kind for c in changes] == ["delete"] * 4
    order = [normalize_dn(c.dn) for c in changes]
    for i, dn in enumerate(order):
        assert not any(normalize_dn(parent_dn(later)) == dn for later in order[i + 1:])
    assert order[-1] == normalize_dn(f"ou=Gone,ou=People,{B}")


def test_deletes_follow_adds_and_modifies() -> None:
    old = [OU(f"ou=A,{B}"), E(f"uid=x,ou=A,{B}", uid="x", sn="1")]
    new = [OU(f"ou=B,{B}"), E(f"uid=x,ou=B,{B}", uid="x", sn="2")]
    changes = run(old, new)
    assert [c.kind for c in changes] == ["add", "add", "delete", "delete"]


# -- renames by key -----------------------------------------------------------------

def test_rename_in_place_by_key() -> None:
    old = [OU(f"ou=People,{B}"), E(f"cn=Ted Bremer,ou=People,{B}", cn="Ted Bremer", uid="t1")]
    new = [OU(f"ou=People,{B}"), E(f"cn=Teddy Bremer,ou=People,{B}", cn="Teddy Bremer",
                                   uid="t1", title="Boss")]
    changes = run(old, new, key="uid")
    rename, modify = changes
    assert (rename.kind, rename.newrdn, rename.deleteoldrdn, rename.newsuperior) == (
        "modrdn", "cn=Teddy Bremer", True, None)
    assert modify.dn == f"cn=Teddy Bremer,ou=People,{B}"
    assert [(m.op, m.attr) for m in modify.mods] == [("add", "title")]
    # Without --key the same inputs are a delete and an add.
    assert sorted(c.kind for c in run(old, new)) == ["add", "delete"]


def test_move_to_another_parent_by_key() -> None:
    old = [OU(f"ou=A,{B}"), OU(f"ou=B,{B}"), E(f"uid=x,ou=A,{B}", uid="x", employeeNumber="7")]
    new = [OU(f"ou=A,{B}"), OU(f"ou=B,{B}"), E(f"uid=x,ou=B,{B}", uid="x", employeeNumber="7")]
    (rename,) = run(old, new, key="employeeNumber")
    assert (rename.dn, rename.newrdn, rename.newsuperior) == (f"uid=x,ou=A,{B}", "uid=x",
                                                              f"ou=B,{B}")


def test_move_into_a_new_parent_adds_the_parent_first() -> None:
    old = [OU(f"ou=A,{B}"), E(f"uid=x,ou=A,{B}", uid="x")]
    new = [OU(f"ou=A,{B}"), OU(f"ou=New,{B}"), E(f"uid=x,ou=New,{B}", uid="x")]
    assert [c.kind for c in run(old, new, key="uid")] == ["add", "modrdn"]


def test_renamed_non_leaf_carries_its_subtree() -> None:
    def tree(ou: str, *, y_title: str, keep_z: bool) -> list[Entry]:
        base = f"ou={ou},{B}"
        out = [OU(base, description="dept", entryUUID="u1"),
               OU(f"ou=Sub,{base}", entryUUID="u2"),
               E(f"uid=x,ou=Sub,{base}", uid="x", entryUUID="u3"),
               E(f"uid=y,{base}", uid="y", title=y_title, entryUUID="u4")]
        if keep_z:
            out.append(E(f"uid=z,{base}", uid="z", entryUUID="u5"))
        return out

    old = tree("Sales", y_title="Clerk", keep_z=True)
    new = tree("Marketing", y_title="Lead", keep_z=False)
    changes = run(old, new, key="entryUUID")
    assert kinds(changes) == [
        ("modrdn", f"ou=Sales,{B}"),
        ("modify", f"uid=y,ou=Marketing,{B}"),
        ("delete", f"uid=z,ou=Marketing,{B}"),  # where the rename carried it
    ]
    assert changes[0].newrdn == "ou=Marketing" and changes[0].newsuperior is None


def test_renames_inside_a_renamed_subtree_use_the_current_dns() -> None:
    old = [OU(f"ou=A,{B}", st="1"), OU(f"ou=Inner,ou=A,{B}", st="2"),
           E(f"uid=x,ou=Inner,ou=A,{B}", uid="x", st="3"), OU(f"ou=Z,{B}", st="4")]
    new = [OU(f"ou=A2,{B}", st="1"), OU(f"ou=Inner2,ou=A2,{B}", st="2"),
           E(f"uid=x2,ou=Z,{B}", uid="x2", st="3"), OU(f"ou=Z,{B}", st="4")]
    changes = run(old, new, key="st")
    assert [(c.kind, c.dn, c.target_dn) for c in changes if c.kind == "modrdn"] == [
        ("modrdn", f"ou=A,{B}", f"ou=A2,{B}"),
        ("modrdn", f"ou=Inner,ou=A2,{B}", f"ou=Inner2,ou=A2,{B}"),
        ("modrdn", f"uid=x,ou=Inner2,ou=A2,{B}", f"uid=x2,ou=Z,{B}"),
    ]


def test_a_dn_left_by_a_rename_can_be_reused_in_the_same_diff() -> None:
    old = [OU(f"ou=P,{B}"), E(f"cn=Ann,ou=P,{B}", cn="Ann", employeeNumber="1")]
    new = [OU(f"ou=P,{B}"), E(f"cn=Ann,ou=P,{B}", cn="Ann", employeeNumber="2"),
           E(f"cn=Ann Old,ou=P,{B}", cn="Ann Old", employeeNumber="1")]
    changes = run(old, new, key="employeeNumber")
    assert [(c.kind, c.dn) for c in changes] == [
        ("modrdn", f"cn=Ann,ou=P,{B}"), ("add", f"cn=Ann,ou=P,{B}")]


def test_a_rename_onto_a_deleted_leaf_deletes_it_first() -> None:
    old = [OU(f"ou=P,{B}"), E(f"cn=Ann,ou=P,{B}", cn="Ann", employeeNumber="1"),
           E(f"cn=Bob,ou=P,{B}", cn="Bob", employeeNumber="2")]
    new = [OU(f"ou=P,{B}"), E(f"cn=Ann,ou=P,{B}", cn="Ann", employeeNumber="2")]
    changes = run(old, new, key="employeeNumber")
    assert kinds(changes) == [("delete", f"cn=Ann,ou=P,{B}"), ("modrdn", f"cn=Bob,ou=P,{B}")]


def test_entries_swapping_dns_are_refused() -> None:
    old = [E(f"cn=A,{B}", cn="A", employeeNumber="1"), E(f"cn=B,{B}", cn="B", employeeNumber="2")]
    new = [E(f"cn=A,{B}", cn="A", employeeNumber="2"), E(f"cn=B,{B}", cn="B", employeeNumber="1")]
    with pytest.raises(DiffOrderError, match="cycle"):
        run(old, new, key="employeeNumber")
    # By DN it is two modifies, which always apply.
    assert [c.kind for c in run(old, new)] == ["modify", "modify"]


def test_key_on_one_side_only_falls_back_to_the_dn() -> None:
    old = [E(P, uid="ted", sn="A")]
    new = [E(P, uid="ted", sn="A", employeeNumber="9")]
    assert mods(run(old, new, key="employeeNumber")) == [("add", "employeeNumber", [b"9"])]


def test_a_key_value_held_twice_is_an_input_error() -> None:
    old = [E(f"uid=a,{B}", uid="a", employeeNumber="1"), E(f"uid=b,{B}", uid="b",
                                                           employeeNumber="1")]
    with pytest.raises(InputError, match="key value"):
        run(old, [], key="employeeNumber")


@pytest.mark.parametrize("seed", range(40))
def test_random_trees_replay_exactly(seed: int) -> None:
    rnd = random.Random(seed)
    old = random_tree(rnd, 25)
    new = mutate(rnd, old)
    rnd.shuffle(new)  # unsorted input
    for key in (None, "employeeNumber"):
        try:
            run(old, new, key=key, run_bytes=rnd.choice([1, 300, 1 << 20]))
        except DiffOrderError:
            assert key is not None  # only renames by key can be unorderable


def random_tree(rnd: random.Random, size: int) -> list[Entry]:
    entries = [OU(f"ou=Root,{B}", employeeNumber="0")]
    for n in range(1, size):
        parent = rnd.choice([e for e in entries if "organizationalUnit" in e.texts("objectClass")])
        if rnd.random() < 0.3:
            entries.append(OU(f"ou=o{n},{parent.dn}", employeeNumber=str(n)))
        else:
            entries.append(E(f"cn=p{n},{parent.dn}", cn=f"p{n}", employeeNumber=str(n),
                             mail=[f"p{n}@x.org"] * rnd.randint(0, 1)))
    return entries


def mutate(rnd: random.Random, old: list[Entry]) -> list[Entry]:
    tree = {normalize_dn(e.dn): e.copy() for e in old}

    def children(dn: str) -> list[str]:
        return [k for k, e in tree.items() if normalize_dn(parent_dn(e.dn)) == dn]

    def subtree(dn: str) -> list[str]:
        out = [dn]
        for child in children(dn):
            out += subtree(child)
        return out

    serial = 1000
    for _ in range(rnd.randint(1, 8)):
        keys = [k for k in tree if k != normalize_dn(f"ou=Root,{B}")]
        if not keys:
            break
        pick = tree[rnd.choice(keys)]
        action = rnd.choice(["modify", "delete", "add", "rename", "move", "reuse"])
        ous = [e for e in tree.values() if "organizationalUnit" in e.texts("objectClass")]
        if action == "modify":
            pick.set("title", [rnd.choice([b"A", b"B"])])
        elif action == "delete":
            for k in subtree(normalize_dn(pick.dn)):
                del tree[k]
        elif action == "add":
            parent = rnd.choice(ous)
            serial += 1
            tree[normalize_dn(f"cn=n{serial},{parent.dn}")] = E(
                f"cn=n{serial},{parent.dn}", cn=f"n{serial}", employeeNumber=str(serial))
        elif action in ("rename", "move", "reuse"):
            rdn_attr = pick.dn.split("=", 1)[0]
            serial += 1
            rdn = f"{rdn_attr}=r{serial}" if action != "move" else pick.dn.split(",", 1)[0]
            parent = parent_dn(pick.dn)
            if action == "move":
                inside = set(subtree(normalize_dn(pick.dn)))
                choices = [e.dn for e in ous if normalize_dn(e.dn) not in inside]
                parent = rnd.choice(choices)
            target = f"{rdn},{parent}"
            if normalize_dn(target) in tree:
                continue
            old_dn = pick.dn
            for k in subtree(normalize_dn(old_dn)):
                moved = tree.pop(k)
                moved.dn = moved.dn[: len(moved.dn) - len(old_dn)] + target
                tree[normalize_dn(moved.dn)] = moved
            tree[normalize_dn(target)].set(rdn_attr, [rdn.split("=", 1)[1].encode()])
            if action == "reuse":
                serial += 1
                tree[normalize_dn(old_dn)] = E(old_dn, **{rdn_attr: old_dn.split(",")[0]
                                               .split("=", 1)[1]}, employeeNumber=str(serial),
                                               **({"objectClass": "organizationalUnit"}
                                                  if rdn_attr == "ou" else {}))
    return list(tree.values())


# -- sorting and input errors --------------------------------------------------------------

def write_ldif(path: Path, entries: Iterable[Entry]) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        writer = LDIFWriter(out)
        for entry in entries:
            writer.entry(entry)
    return path


def people(n: int, title: str = "Engineer") -> list[Entry]:
    out = [OU(f"ou=People,{B}")]
    out += [E(f"uid=u{i:04d},ou=People,{B}", uid=f"u{i:04d}", cn=f"User {i}", title=title)
            for i in range(n)]
    return out


def test_unsorted_input_is_sorted_externally_in_tiny_runs(tmp_path: Path) -> None:
    old = people(300)
    new = people(300)
    for entry in new[::7]:
        entry.set("title", [b"Manager"])
    shuffled = new[:]
    random.Random(5).shuffle(shuffled)
    sink = ListSink()
    # 1-byte runs: one record per run, more runs than one merge round takes.
    summary = diff(old, shuffled, sink, old_name="old.ldif", new_name="new.ldif",
                   options=DiffOptions(run_bytes=1, tmpdir=str(tmp_path)))
    assert summary.sorted_inputs == ["new.ldif"]
    assert summary.modified == len(new[::7]) and summary.changes == summary.modified
    assert_leaves(old, new, sink.changes)
    assert list(tmp_path.iterdir()) == []  # the work folder is gone


def test_duplicate_dn_is_an_input_error_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.ldif"
    path.write_text(f"dn: uid=a,{B}\nuid: a\n\ndn: uid=b,{B}\nuid: b\n\ndn: UID=A,{B}\nuid: a\n")
    assert main(["diff", str(path), str(path)]) == 2
    with pytest.raises(InputError) as info:
        from dirsync.ldif.diff import ldif_entries
        diff(ldif_entries(str(path)), [], ListSink())
    assert info.value.line == 7 and "line 1" in str(info.value)


# -- the command ---------------------------------------------------------------

@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    old = people(5)
    new = people(5)
    new[1].set("title", [b"Manager"])
    new[2].add("jpegPhoto", [b"\xff\xd8\xff\x00binary"])
    del new[3]
    new.append(E(f"uid=new,ou=People,{B}", uid="new", cn="Zoë Neu"))
    return write_ldif(tmp_path / "old.ldif", old), write_ldif(tmp_path / "new.ldif", new)


def test_command_writes_ldif_change_records(pair: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "changes.ldif"
    assert main(["diff", str(pair[0]), str(pair[1]), "-o", str(out)]) == 0
    records = list(read_ldif(out))
    assert [(r.kind, r.dn.split(",")[0]) for r in records] == [
        ("add", "uid=new"), ("modify", "uid=u0000"), ("modify", "uid=u0001"),
        ("delete", "uid=u0002")]
    assert "jpegPhoto:: " in out.read_text()
    assert "1 added, 2 modified, 0 renamed, 1 deleted" in capsys.readouterr().err


def test_command_json_and_text(pair: tuple[Path, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "diff", str(pair[0]), str(pair[1])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {o["changetype"] for o in lines} == {"add", "modify", "delete"}
    photo = next(o for o in lines if o["changetype"] == "modify"
                 and o["modifications"][0]["attribute"] == "jpegPhoto")
    assert photo["modifications"][0]["values"] == [{"base64": "/9j/AGJpbmFyeQ=="}]
    added = next(o for o in lines if o["changetype"] == "add")
    assert added["attributes"]["cn"] == ["Zoë Neu"]
    assert main(["diff", "--format", "text", str(pair[0]), str(pair[1])]) == 0
    text = capsys.readouterr().out
    assert f"+ uid=new,ou=People,{B}" in text and "    add jpegPhoto: <10 bytes>" in text
    assert text.rstrip().endswith("1 added, 2 modified, 0 renamed, 1 deleted")


def test_exit_status_equal_and_different(pair: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    old, new = map(str, pair)
    assert main(["diff", old, old]) == 0
    assert capsys.readouterr().out == ""  # nothing at all when equal
    assert main(["diff", old, new]) == 0
    assert main(["diff", "--exit-code", old, old]) == 0
    assert main(["diff", "--exit-code", old, new]) == 1


def test_command_ignore_option_is_repeatable_and_comma_separated(
        pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = map(str, pair)
    assert main(["diff", "--format", "json", "--ignore", "title,jpegPhoto", old, new]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {o["changetype"] for o in objs} == {"add", "delete"}
    assert main(["diff", "--ignore", "title", "--ignore", "jpegPhoto", "--ignore", "cn",
                 "--format", "json", old, new]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "cn" not in next(o for o in objs if o["changetype"] == "add")["attributes"]
    assert main(["diff", "--ignore", "bad name", old, new]) == 2


@pytest.mark.parametrize(("text", "line", "needle"), [
    (f"dn: uid=a,{B}\nuid: a\njpegPhoto:: !!notbase64\n", 3, "bad base64"),
    (f"dn: uid=a,{B}\nuid: a\n\nuid: b\n", 4, "does not start with 'dn:'"),
    (f"dn: uid=a,{B}\nchangetype: delete\n", 1, "change record"),
    (f"dn: uid=a,{B}\nuid: a\n\ndn: uid=b,{B}\nchangetype: frobnicate\n", 5,
     "unknown changetype"),
])
def test_malformed_input_exits_2_naming_file_and_line_and_writes_nothing(
        pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        text: str, line: int, needle: str) -> None:
    bad = tmp_path / "bad.ldif"
    bad.write_text(text)
    out = tmp_path / "out.ldif"
    for args in ([str(bad), str(pair[1])], [str(pair[0]), str(bad)]):
        assert main(["diff", *args, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{bad}:{line}:" in err and needle in err
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    out.write_text("previous\n")
    assert main(["diff", str(bad), str(pair[1]), "-o", str(out)]) == 2
    assert out.read_text() == "previous\n"
    # On stdout too: both inputs are read before anything is written.
    assert main(["diff", str(pair[0]), str(bad)]) == 2
    assert capsys.readouterr().out == ""


def test_missing_file_is_a_usage_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(tmp_path / "nope.ldif"), str(tmp_path / "nope.ldif")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_mods_keep_new_attribute_spelling() -> None:
    changes = run([E(P, uid="ted")], [E(P, uid="ted", MobilE="1")])
    assert mods(changes) == [("add", "MobilE", [b"1"])]
    assert Mod("add", "MobilE", [b"1"]) == changes[0].mods[0]


# -- the LDIF reader's fast path (what diff reads files with) ---------------------------

def read_both(path: Path) -> tuple[object, object]:
    """What the fast path and the lexer alone make of one file."""
    from dirsync.ldif.io import LDIFReader

    def outcome(fast: bool) -> object:
        out: list[object] = []
        try:
            with LDIFReader(path, fast=fast) as reader:
                for record in reader:
                    if isinstance(record, Entry):
                        out.append(("entry", record.dn, list(record.attrs.items()), record.line))
                    else:
                        out.append(("change", record))
                out.append(("version", reader.version))
        except InputError as exc:
            out.append(("error", str(exc), exc.line, exc.field))
        return out

    return outcome(True), outcome(False)


TRICKY = [
    "version: 1\n\ndn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn: b\n",
    "version: 1\ndn: cn=a,dc=x\ncn: a\n\n\n\ndn: cn=b,dc=x\ncn:b\ncn:\nsn:   spaced\n",
    "dn: cn=a,dc=x\ncn: a\n\nversion: 1\n\ndn: cn=b,dc=x\ncn: b\n",
    "dn: cn=a,dc=x\ncn: a\n\n# comment\n# folded\n  comment\ndn: cn=b,dc=x\ncn: b\n",
    "dn: cn=a,dc=x\ncn: a\n# inside\nsn: s\n\ndn: cn=b,dc=x\n# last\n\ncn: c\n",
    "dn: cn=a,dc=x\r\ncn: a\r\n\r\ndn: cn=b,dc=x\r\ncn: b\r\nsn: x\ry\r\n\r\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn: b\r",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,\n dc=x\ndescription: long\n  value\n folded\n",
    "dn: cn=a,dc=x\ncn: a\n\n continued\ndn: cn=b,dc=x\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn:: YWJj\njpegPhoto:: /9j/\n 4AAQ\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn:: !!!!\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn:: Y249w6ksZGM9eA==\ncn:: w6k=\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn:: Y249/yxkYz14\ncn: x\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\njpegPhoto:< file://{photo}\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\nchangetype: modify\nreplace: sn\nsn: y\n-\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncontrol: 1.2.3 true\nchangetype: delete\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\nchangetype: modrdn\nnewrdn: cn=c\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn: b\nchangetype: add\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn: b\n-\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\nc n: b\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\nno value spec\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: not a dn\ncn: b\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=a\\,b+uid=c,ou=\"q,r\",dc=x\ncn: a,b\n",
    "dn: cn=a,dc=x\ncn: a\n\nDN: cn=b,dc=x\ncn: b\n",
    "dn: cn=a,dc=x\nCN: a\ncn: b\nCn: c\ndn: cn=z\n\ndn:\nobjectClass: top\n",
    "dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn: b",
    "",
    "# only a comment\n",
    "\n\n\ndn: cn=a,dc=x\ncn: a\n\n\n",
    "dn: cn=a,dc=x\ncn: Zoë\n\ndn: cn=ü,dc=x\ncn: ü\n",
]


@pytest.mark.parametrize("chunk", [5, 1 << 20])
@pytest.mark.parametrize("text", TRICKY)
def test_fast_path_reads_exactly_as_the_lexer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              text: str, chunk: int) -> None:
    import dirsync.ldif.fastread

    monkeypatch.setattr(dirsync.ldif.fastread, "_FAST_CHUNK", chunk)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8")
    path = tmp_path / "in.ldif"
    path.write_bytes(text.replace("{photo}", str(photo)).encode("utf-8"))
    fast, lexer = read_both(path)
    assert fast == lexer


def test_fast_path_reads_random_ldif_exactly_as_the_lexer(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import dirsync.ldif.fastread

    dns = ["dn: cn=a,dc=x", "dn: cn=b\\,c,dc=x", "dn:: Y249w6ksZGM9eA==", "dn:cn=d,dc=x",
           "dn: cn=ü+uid=1,dc=x"]
    good = ["cn: v", "cn:v", "cn:", "CN:  v", "sn:: YWJj", "mail: a@b", "cn: é",
            "description: long", " folded", "jpegPhoto:: /9j/", " 4AAQ"]
    odd = ["dn: bad", "sn:: !!", "", "# c", " #c", "version: 1", "-", "changetype: delete",
           "control: 1.2.3", "x y: z", "mail: a@b\r", "no colon"]
    rnd = random.Random(7)
    path = tmp_path / "in.ldif"
    for _ in range(300):
        blocks = []
        for _ in range(rnd.randint(1, 6)):
            lines = [rnd.choice(dns)] + [rnd.choice(good) for _ in range(rnd.randint(0, 8))]
            if rnd.random() < 0.25:
                lines.insert(rnd.randint(0, len(lines)), rnd.choice(odd))
            blocks.append("\n".join(lines))
        text = rnd.choice(["\n\n", "\n\n\n", "\r\n\r\n"]).join(blocks)
        text += rnd.choice(["", "\n", "\n\n"])
        path.write_bytes(text.encode("utf-8"))
        monkeypatch.setattr(dirsync.ldif.fastread, "_FAST_CHUNK", rnd.choice([3, 17, 1 << 20]))
        fast, lexer = read_both(path)
        assert fast == lexer, text


def test_fast_path_names_the_exact_line_of_a_bad_byte(tmp_path: Path) -> None:
    from dirsync.ldif.io import LDIFReader

    body = "".join(f"dn: cn=u{i},dc=x\ncn: u{i}\ndescription: filler filler\n\n"
                   for i in range(3000)).encode()
    bad = body.replace(b"cn: u2500\n", b"cn: u\xff2500\n")
    path = tmp_path / "bad.ldif"
    path.write_bytes(bad)
    with pytest.raises(InputError) as info, LDIFReader(path) as reader:
        list(reader)
    assert info.value.line == 4 * 2500 + 2 and info.value.field == "cn"
    assert "not UTF-8" in str(info.value)


def test_a_refused_diff_leaves_no_file_open(tmp_path: Path) -> None:
    import gc

    # Enough deletes to spill the delete spool to disk, then a rename cycle.
    old = [OU(f"ou=A,{B}")] + [E(f"uid=u{i},ou=A,{B}", uid=f"u{i}") for i in range(5000)]
    old += [OU(f"ou=Z,{B}"), E(f"cn=a,ou=Z,{B}", cn="a", employeeNumber="1"),
            E(f"cn=b,ou=Z,{B}", cn="b", employeeNumber="2")]
    new = [OU(f"ou=Z,{B}"), E(f"cn=a,ou=Z,{B}", cn="a", employeeNumber="2"),
           E(f"cn=b,ou=Z,{B}", cn="b", employeeNumber="1")]
    with pytest.raises(DiffOrderError):
        diff(old, new, ListSink(), options=DiffOptions(key="employeeNumber",
                                                       tmpdir=str(tmp_path)))
    gc.collect()  # an unclosed file would warn here, and warnings are errors
    assert list(tmp_path.iterdir()) == []


def test_output_into_a_missing_folder_is_a_usage_error(
        pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "no" / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err
