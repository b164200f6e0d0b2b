"""Properties of the export's foreign names (pure, with Hypothesis): whatever the
mix of same-named recipients, names held by others and current names, every
recipient gets a name nobody else has, and keeps the one it has when it may."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dirsync.entry import normalize_dn
from dirsync.mapping.exportnames import NumberedNames
from dirsync.sync.plan import assign_dns

C = "ou=Contoso,o=Partner"
VALUES = ["Sam Wu", "sam wu", "Sam Wu (2)", "Lee"]


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[tuple[str, str]], dict[str, str],
                                          dict[str, str], dict[str, str], dict[str, str]]:
    count = draw(st.integers(1, 8))
    anchors = [f"a{i}" for i in range(count)]
    wanted = [(a, draw(st.sampled_from(VALUES))) for a in anchors]
    qualifiers = {a: q for a in anchors if (q := draw(st.sampled_from(["", "HR", "2"])))}
    names = NumberedNames("cn", C, qualifiers, limit=20)
    pool = [names.dn(v, n) for v in VALUES for n in range(1, 5)]
    pool += [names.dn(f"{v} (HR)", 1) for v in VALUES]
    current: dict[str, str] = {}
    for anchor in anchors:
        if draw(st.booleans()):
            current[anchor] = draw(st.sampled_from(pool))
    held = {normalize_dn(dn): "other" for dn in draw(st.lists(st.sampled_from(pool)))}
    unowned = {normalize_dn(dn): dn for dn in draw(st.lists(st.sampled_from(pool),
                                                            max_size=3))}
    return wanted, current, held, unowned, qualifiers


@settings(max_examples=150, deadline=None)
@given(situations())
def test_names_are_unique_and_kept_when_they_may_be(situation: tuple[
        list[tuple[str, str]], dict[str, str], dict[str, str], dict[str, str],
        dict[str, str]]) -> None:
    wanted, current, held, unowned, qualifiers = situation
    names = NumberedNames("cn", C, qualifiers, limit=20)
    before = dict(held)
    result = assign_dns(wanted, current, held, unowned, rdn_attribute="cn", container=C,
                        naming=names)
    assert set(result.dns) | set(result.conflicts) == {a for a, _ in wanted}
    given_names = [normalize_dn(dn) for dn in result.dns.values()]
    assert len(set(given_names)) == len(given_names)            # nobody shares a name
    assert not set(given_names) & set(before)                   # nor takes another's
    assert not set(given_names) & set(unowned)                  # nor a stranger's
    values = dict(wanted)
    for anchor, dn in result.dns.items():
        assert names.keeps(anchor, values[anchor], dn)          # one of its own names
    claimed: set[str] = set()
    for anchor, value in wanted:                                 # in the order given
        now = current.get(anchor)
        if now is None or not names.keeps(anchor, value, now):
            continue
        key = normalize_dn(now)
        if key in before or key in unowned or key in claimed:
            continue
        claimed.add(key)
        assert result.dns[anchor] == now                         # kept where it is
    for anchor, why in result.conflicts.items():
        # Only a stranger's plain name, or every name taken, makes a conflict.
        plain = normalize_dn(names.dn(values[anchor], 1))
        assert plain in unowned or "taken by other entries" in why
