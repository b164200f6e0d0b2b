"""AD's names for exported contacts, without a server: 64 characters of cn,
the clash-naming rule kept, one line, RFC 4514 escapes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dirsync.entry import normalize_dn, rdn_values
from dirsync.sync.adexport import CN_LIMIT, ADNames, exchange_absent, fit, name_text, utf16_units
from dirsync.sync.plan import assign_dns

CONTAINER = "OU=Partner,DC=corp,DC=example"


def names(qualifiers: dict[str, str] | None = None) -> ADNames:
    return ADNames("cn", CONTAINER, qualifiers or {})


def cn(dn: str) -> str:
    return rdn_values(dn)[0][1]


def test_a_short_name_is_kept_and_escaped() -> None:
    dn = names().dn("Wu, Sam #1", 1)
    assert dn == "cn=Wu\\, Sam #1," + CONTAINER
    assert cn(dn) == "Wu, Sam #1"


def test_a_long_name_is_cut_to_64_with_room_for_its_number() -> None:
    long = "A" * 30 + " " + "B" * 50
    plain, second = cn(names().dn(long, 2 - 1)), cn(names().dn(long, 2))
    assert len(plain) == CN_LIMIT and plain == long[:64]
    assert len(second) <= CN_LIMIT and second.endswith(" (2)")
    assert second[:-4] == long[:60]


def test_a_cut_never_ends_in_a_space_nor_splits_a_character() -> None:
    assert fit("x" * 63 + " y", 64) == "x" * 63
    emoji = "\U0001F600" * 40                       # two UTF-16 units each
    assert fit(emoji, 64) == "\U0001F600" * 32
    assert utf16_units(fit(emoji, 63)) == 62


def test_line_breaks_and_controls_become_one_space() -> None:
    assert name_text(" Sam\n\tWu\x00 ") == "Sam Wu"


def test_the_qualifier_is_bounded_and_the_name_keeps_room() -> None:
    q = names({"a1": "Department of " + "Very " * 20 + "Long Names"})
    name = cn(q.qualified("a1", "Sam Wu" * 20) or "")
    assert len(name) <= CN_LIMIT
    assert name.startswith("Sam Wu") and name.endswith(")")
    assert len(name.split(" (", 1)[0]) >= 20


def test_two_names_equal_once_cut_are_told_apart() -> None:
    base = "N" * 70
    wanted = [("a1", base + "one"), ("a2", base + "two"), ("a3", base + "three")]
    result = assign_dns(wanted, {}, {}, {}, rdn_attribute="cn", container=CONTAINER,
                        naming=names())
    dns = sorted(result.dns.values())
    assert len({normalize_dn(d) for d in dns}) == 3 and not result.conflicts
    assert all(len(cn(d)) <= CN_LIMIT for d in dns)


def test_an_entry_keeps_its_cut_name_from_run_to_run() -> None:
    naming = names()
    long = "L" * 80
    assert naming.keeps("a1", long, naming.dn(long, 1))
    assert naming.keeps("a2", long, naming.dn(long, 7))
    assert not naming.keeps("a1", long, f"cn={'L' * 80},{CONTAINER}")


@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=999))
def test_every_name_fits(value: str, n: int) -> None:
    text = cn(names().dn(value, n))
    assert utf16_units(text) <= CN_LIMIT
    assert "\n" not in text


def test_exchange_attributes_missing_from_a_schema() -> None:
    assert exchange_absent({"cn", "mail"}) == ["targetAddress", "mailNickname",
                                               "msExchHideFromAddressLists"]
    assert exchange_absent({"targetaddress", "mailnickname", "msexchhidefromaddresslists"}) \
        == []
