"""The pure core of a sync (dirsync.sync.plan): table-style, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.config import Threshold
from dirsync.entry import Entry, normalize_dn
from dirsync.ldif.changes import Mod
from dirsync.mapping.exportnames import NumberedNames, qualifier_text
from dirsync.sync.plan import (
    PHASE_ADD,
    PHASE_DELETE,
    PHASE_GROUP,
    PHASE_MODIFY,
    PHASE_RENAME,
    assign_dns,
    order_deletes,
    order_renames,
    owned_hash,
    plan_entry,
    resolve_members,
    safety_stop,
    source_hash,
    target_entry,
)

C = "ou=Import,dc=example,dc=org"
OWNED = frozenset({"cn", "sn", "title", "mail", "dirsyncanchor", "dirsyncsource"})


def person(dn: str, **attrs: str | list[str]) -> Entry:
    entry = Entry(dn, {"objectClass": [b"inetOrgPerson", b"dirsyncObject"]})
    for name, value in attrs.items():
        entry.add(name, [v.encode() for v in ([value] if isinstance(value, str) else value)])
    return entry


def test_target_entry() -> None:
    entry = target_entry(f"cn=Ted (t1),{C}", {"cn": [b"Ted"], "sn": [b"B"]}, ["inetOrgPerson"],
                         rdn_attribute="cn", rdn_value="Ted (t1)", anchor="t1",
                         connection="po1")
    assert entry.texts("objectClass") == ["inetOrgPerson", "dirsyncObject"]
    assert entry.texts("cn") == ["Ted", "Ted (t1)"]      # the RDN value is a value
    assert entry.texts("dirsyncAnchor") == ["t1"] and entry.texts("dirsyncSource") == ["po1"]
    group = target_entry(f"cn=G,{C}", {"cn": [b"G"]}, ["groupOfNames"], rdn_attribute="cn",
                         rdn_value="G", anchor="g", connection="po1", members=[])
    assert group.texts("member") == [f"cn=G,{C}"]        # an empty group names itself


@pytest.mark.parametrize(("hub", "target", "action", "phases", "mods"), [
    (None, person(f"cn=A,{C}", cn="A", sn="x"), "add", [PHASE_ADD], None),
    (person(f"cn=A,{C}", cn="A", sn="x"), person(f"cn=A,{C}", cn="A", sn="x"), "unchanged",
     [], None),
    # An attribute the mapping does not own stays, whatever its value.
    (person(f"cn=A,{C}", cn="A", sn="x", description="by hand"),
     person(f"cn=A,{C}", cn="A", sn="x"), "unchanged", [], None),
    (person(f"cn=A,{C}", cn="A", sn="x", title="Clerk"),
     person(f"cn=A,{C}", cn="A", sn="x", title="Boss"), "modify", [PHASE_MODIFY],
     [Mod("replace", "title", [b"Boss"])]),
    (person(f"cn=A,{C}", cn="A", sn="x", title="Clerk"), person(f"cn=A,{C}", cn="A", sn="x"),
     "modify", [PHASE_MODIFY], [Mod("delete", "title")]),
    (person(f"cn=A,{C}", cn="A", sn="x"), person(f"cn=B,{C}", cn="B", sn="x"), "rename",
     [PHASE_RENAME], None),
    (person(f"cn=A,{C}", cn="A", sn="x"), person(f"cn=B,{C}", cn="B", sn="y"), "rename",
     [PHASE_RENAME, PHASE_MODIFY], [Mod("replace", "sn", [b"y"])]),
])
def test_plan_entry(hub: Entry | None, target: Entry, action: str, phases: list[int],
                    mods: list[Mod] | None) -> None:
    plan = plan_entry(target, hub, OWNED)
    assert plan.action == action
    assert [phase for phase, _ in plan.changes] == phases
    if mods is not None:
        assert plan.changes[-1][1].mods == mods


def test_plan_entry_adds_missing_classes_and_never_removes_any() -> None:
    hub = person(f"cn=A,{C}", cn="A", sn="x")
    hub.set("objectClass", [b"inetOrgPerson", b"posixAccount"])
    plan = plan_entry(person(f"cn=A,{C}", cn="A", sn="x"), hub, OWNED)
    assert plan.changes[0][1].mods == [Mod("add", "objectClass", [b"dirsyncObject"])]


def test_plan_entry_for_a_new_structural_class_deletes_and_adds() -> None:
    hub = person(f"cn=L,{C}", cn="L", sn="L")
    group = Entry(f"cn=L,{C}", {"objectClass": [b"groupOfNames", b"dirsyncObject"],
                                "cn": [b"L"], "member": [f"cn=L,{C}".encode()]})
    plan = plan_entry(group, hub, OWNED | {"member"}, group=True)
    assert [(p, c.kind) for p, c in plan.changes] == [(PHASE_DELETE, "delete"),
                                                      (PHASE_GROUP, "add")]


def test_assign_dns() -> None:
    unowned = {normalize_dn(f"cn=Taken,{C}"): f"cn=Taken,{C}"}
    held = {normalize_dn(f"cn=Kept,{C}"): "k"}
    result = assign_dns(
        [("b", "Same"), ("a", "Same"), ("c", "Taken"), ("d", "Kept"), ("e", "Moved"),
         ("f", "Suffixed")],
        {"e": f"cn=Old,{C}", "f": f"cn=Suffixed (f),{C}"}, held, unowned,
        rdn_attribute="cn", container=C)
    assert result.dns == {
        "a": f"cn=Same,{C}", "b": f"cn=Same (b),{C}",     # by anchor: a first
        "d": f"cn=Kept (d),{C}",                          # another entry of ours keeps it
        "e": f"cn=Moved,{C}",
        "f": f"cn=Suffixed (f),{C}",                      # keeps the name it has
    }
    assert list(result.conflicts) == ["c"] and "does not own" in result.conflicts["c"]


def test_assign_dns_with_numbered_names() -> None:
    """The export's names: the next free number; a number an entry has stays its own."""
    names = NumberedNames("cn", C)
    held = {normalize_dn(f"cn=Sam Wu,{C}"): "kept", normalize_dn(f"cn=Sam Wu (3),{C}"): "k3"}
    unowned = {normalize_dn(f"cn=Sam Wu (4),{C}"): f"cn=Sam Wu (4),{C}"}
    result = assign_dns(
        [("b", "Sam Wu"), ("a", "Sam Wu"), ("c", "Sam Wu"), ("d", "Sam Wu"), ("e", "Lee")],
        {"d": f"cn=sam wu (7),{C}", "e": f"cn=Lee (2),{C}"}, held, unowned,
        rdn_attribute="cn", container=C, naming=names)
    assert result.dns == {
        "d": f"cn=sam wu (7),{C}",                        # keeps its number
        "e": f"cn=Lee (2),{C}",                           # even with the plain name free
        "a": f"cn=Sam Wu (2),{C}",
        "b": f"cn=Sam Wu (5),{C}",                        # 3 is ours, 4 someone else's
        "c": f"cn=Sam Wu (6),{C}",
    }
    assert not names.keeps("x", "Sam Wu", f"cn=Sam Wu (0),{C}")
    assert not names.keeps("x", "Sam Wu", f"cn=Sam Wu (2),ou=Elsewhere,{C}")
    assert not names.keeps("x", "Sam", f"cn=Sam Wu (2),{C}")
    full = assign_dns([("z", "X")], {}, {normalize_dn(f"cn=X,{C}"): "y",
                                         normalize_dn(f"cn=X (2),{C}"): "w"}, {},
                      rdn_attribute="cn", container=C, naming=NumberedNames("cn", C, limit=2))
    assert list(full.conflicts) == ["z"] and "cn=X (2)" in full.conflicts["z"]


def test_numbered_names_try_the_qualifier_first() -> None:
    names = NumberedNames("cn", C, {"q": "HR", "long": qualifier_text(" a\n b " + "x" * 99)})
    assert list(names.candidates("q", "Sam"))[:3] == [f"cn=Sam,{C}", f"cn=Sam (HR),{C}",
                                                      f"cn=Sam (2),{C}"]
    assert list(names.candidates("other", "Sam"))[:2] == [f"cn=Sam,{C}", f"cn=Sam (2),{C}"]
    assert names.keeps("q", "Sam", f"cn=sam (hr),{C}")
    assert not names.keeps("other", "Sam", f"cn=Sam (HR),{C}")
    assert names.qualifiers["long"] == "a b " + "x" * 60
    held = {normalize_dn(f"cn=Sam,{C}"): "k", normalize_dn(f"cn=Sam (HR),{C}"): "k2"}
    result = assign_dns([("q", "Sam")], {}, held, {}, rdn_attribute="cn", container=C,
                        naming=names)
    assert result.dns == {"q": f"cn=Sam (2),{C}"}


def test_assign_dns_escapes_values() -> None:
    result = assign_dns([("x", "O'Neil, Pat")], {}, {}, {}, rdn_attribute="cn", container=C)
    assert result.dns["x"] == f"cn=O'Neil\\, Pat,{C}"


@pytest.mark.parametrize(("renames", "expected"), [
    ([("a", "cn=A", "cn=B"), ("b", "cn=B", "cn=C")],
     [("b", "cn=B", "cn=C"), ("a", "cn=A", "cn=B")]),
    ([("a", "cn=A", "cn=B"), ("b", "cn=B", "cn=A")],
     [("a", "cn=A", "cn=B~"), ("b", "cn=B", "cn=A"), ("a", "cn=B~", "cn=B")]),
    ([("x", "cn=X", "cn=Y")], [("x", "cn=X", "cn=Y")]),
])
def test_order_renames(renames: list[tuple[str, str, str]],
                       expected: list[tuple[str, str, str]]) -> None:
    assert order_renames(renames, lambda anchor, old, new: new + "~") == expected


def test_order_renames_puts_every_rename_after_the_one_freeing_its_dn() -> None:
    # A chain of 50 and a cycle of 3, shuffled.
    renames = [(f"c{i}", f"cn={i}", f"cn={i + 1}") for i in range(50)]
    renames += [("x", "cn=X", "cn=Y"), ("y", "cn=Y", "cn=Z"), ("z", "cn=Z", "cn=X")]
    renames = renames[::2] + renames[1::2]
    ordered = order_renames(renames, lambda anchor, old, new: f"{new}~")
    taken = {old for _, old, _ in renames}
    for anchor, old, new in ordered:
        assert new not in taken, (anchor, new)
        taken.discard(old)
        taken.add(new)
    assert {a for a, _, _ in ordered} == {a for a, _, _ in renames}


def test_order_deletes_children_first() -> None:
    assert order_deletes([C, f"cn=a,{C}", f"cn=b,cn=a,{C}"]) == [f"cn=b,cn=a,{C}",
                                                                 f"cn=a,{C}", C]


def test_resolve_members() -> None:
    keys = {"ann": "a1", "bob": "b1", normalize_dn("uid=cy,o=F"): "c1"}
    dns = {"a1": f"cn=Ann,{C}", "b1": f"cn=Bob,{C}", "c1": f"cn=Cy,{C}"}
    assert resolve_members(["Ann", "bob", "bob", "zed"], keys, dns, by_dn=False) == (
        [f"cn=Ann,{C}", f"cn=Bob,{C}"], ["zed"])
    assert resolve_members(["UID=Cy, O=F"], keys, dns, by_dn=True) == ([f"cn=Cy,{C}"], [])


@pytest.mark.parametrize(("deletes", "held", "threshold", "source", "allow", "stops"), [
    (0, 100, Threshold(500), 100, None, False),
    (500, 1000, Threshold(500), 500, None, False),
    (501, 1000, Threshold(500), 499, None, True),
    (501, 1000, Threshold(500), 499, 501, False),
    (501, 1000, Threshold(500), 499, 500, True),
    (11, 100, Threshold(None, 10.0), 89, None, True),
    (10, 100, Threshold(None, 10.0), 90, None, False),
    (3, 3, Threshold(500), 0, None, True),        # an empty source
    (3, 3, Threshold(500), 0, 3, False),
    (0, 0, Threshold(500), 0, None, False),       # nothing held, nothing read: fine
    (1, 10, Threshold(0), 9, None, True),         # 0: every delete needs approval
])
def test_safety_stop(deletes: int, held: int, threshold: Threshold, source: int,
                     allow: int | None, stops: bool) -> None:
    found = safety_stop(deletes=deletes, held=held, threshold=threshold, source_entries=source,
                        allow_deletes=allow)
    assert (found is not None) == stops
    if found:
        assert f"--allow-deletes {deletes}" in found


def test_the_safety_stop_says_what_the_threshold_is_and_how_to_allow_the_deletes() -> None:
    """Not "3 deletes exceed the delete threshold of 2 (2 of 35 entries)"."""
    assert safety_stop(deletes=3, held=35, threshold=Threshold(2), source_entries=32,
                       allow_deletes=None) == (
        "this run would delete 3 entries, but delete_threshold = 2 allows at most 2 in one "
        "run; nothing was changed (to let this run delete them, run it again with "
        "--allow-deletes 3, or raise delete_threshold)")
    assert safety_stop(deletes=1, held=35, threshold=Threshold(None, 2.0), source_entries=34,
                       allow_deletes=None) == (
        'this run would delete 1 entry, but delete_threshold = "2%" allows at most 0 in one '
        "run (2% of the 35 entries the hub holds for this connection); nothing was changed "
        "(to let this run delete it, run it again with --allow-deletes 1, or raise "
        "delete_threshold)")
    assert safety_stop(deletes=1, held=1, threshold=Threshold(500), source_entries=0,
                       allow_deletes=None) == (
        "the source is empty while the hub holds 1 entry of this connection; nothing was "
        "changed (to let this run delete it, run it again with --allow-deletes 1)")
    # An export's target is the foreign side: the message says so.
    assert safety_stop(deletes=1, held=1, threshold=Threshold(500), source_entries=0,
                       allow_deletes=None, target="the foreign side") == (
        "the source is empty while the foreign side holds 1 entry of this connection; "
        "nothing was changed (to let this run delete it, run it again with --allow-deletes 1)")


def test_hashes() -> None:
    a = Entry("x", {"cn": [b"A"], "Mail": [b"1", b"2"]})
    b = Entry("x", {"mail": [b"1", b"2"], "CN": [b"A"]})
    assert source_hash(a) == source_hash(b)
    assert source_hash(a) != source_hash(Entry("y", dict(a.attrs)))
    # The same values give the same digest whether or not something else holds them.
    held = bytes(bytearray(b"shared"))
    assert source_hash(Entry("x", {"cn": [held]})) == \
        source_hash(Entry("x", {"cn": [bytes(bytearray(b"shared"))]}))
    owned = frozenset({"cn", "mail"})
    assert owned_hash({"cn": [b"A"], "mail": [b"2", b"1"], "title": [b"x"]}, owned) == \
        owned_hash({"CN": [b"A"], "mail": [b"1", b"2"], "objectClass": [b"y"]}, owned)
    assert owned_hash({"cn": [b"A"]}, owned) != owned_hash({"cn": [b"a"]}, owned)


def test_missing_containers_are_added_top_first_and_only_ou_o_dc(tmp_path: Path) -> None:
    from dirsync.directories import LDIFDirectory
    from dirsync.errors import ConfigError
    from dirsync.sync.containers import container_adds

    hub_file = tmp_path / "hub.ldif"
    hub_file.write_text("dn: dc=example,dc=org\nobjectClass: domain\ndc: example\n")
    hub = LDIFDirectory(hub_file)
    adds = container_adds(hub, "ou=PO1,ou=Contacts,dc=example,dc=org", "dc=example,dc=org",
                          "connections[0].import_container")
    assert [(c.kind, c.dn) for c in adds] == [("add", "ou=Contacts,dc=example,dc=org"),
                                            ("add", "ou=PO1,ou=Contacts,dc=example,dc=org")]
    assert adds[0].attrs == {"objectClass": [b"organizationalUnit"], "ou": [b"Contacts"]}
    assert container_adds(hub, "dc=example,dc=org", "dc=example,dc=org", "k") == []
    with pytest.raises(ConfigError, match=r"^connections\[0\]\.foreign_container: "
                                          r"cn=X,dc=example,dc=org does not exist"):
        container_adds(hub, "cn=X,dc=example,dc=org", "dc=example,dc=org",
                       "connections[0].foreign_container")
