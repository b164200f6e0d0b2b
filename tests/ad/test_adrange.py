"""Range retrieval (MS-ADTS 3.1.1.3.1.3.3) on server answers recorded as AD gives them.

Samba returns every value at once, so the follow-up reads are tested
against answers shaped as AD's: ``member;range=0-1499`` first, then
``member;range=1500-2999`` ... and ``member;range=3000-*`` last.
"""

from __future__ import annotations

import pytest

from dirsync.directories.adrange import (
    Range,
    RangeError,
    complete_ranges,
    parse_range,
)

DN = "CN=All Staff,OU=Groups,DC=corp,DC=example"


def members(n: int) -> list[bytes]:
    return [f"CN=User {i:05d},OU=People,DC=corp,DC=example".encode() for i in range(n)]


class RangedServer:
    """Answers follow-up reads as AD does, ``window`` values at a time."""

    def __init__(self, values: list[bytes], window: int = 1500) -> None:
        self.values = values
        self.window = window
        self.asked: list[str] = []

    def first(self) -> dict[str, list[bytes]]:
        return {"cn": [b"All Staff"], **self.answer(0)}

    def answer(self, low: int) -> dict[str, list[bytes]]:
        chunk = self.values[low:low + self.window]
        last = low + self.window >= len(self.values)
        high = "*" if last else str(low + len(chunk) - 1)
        return {f"member;range={low}-{high}": chunk}

    def fetch(self, dn: str, attr: str) -> dict[str, list[bytes]]:
        assert dn == DN
        self.asked.append(attr)
        step = parse_range(attr)
        assert step is not None and step.final
        return self.answer(step.low)


@pytest.mark.parametrize(("name", "expected"), [
    ("member;range=0-1499", Range("member", 0, 1499)),
    ("member;range=1500-*", Range("member", 1500, None)),
    ("Member;Range=0-0", Range("Member", 0, 0)),
    ("member;range=1-1", Range("member", 1, 1)),
    ("member", None),
    ("member;binary", None),
    ("member;range=a-b", None),
    ("member;range=5", None),
])
def test_parse_range(name: str, expected: Range | None) -> None:
    assert parse_range(name) == expected


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(RangeError):
        parse_range("member;range=10-2")


@pytest.mark.parametrize("count", [1500, 1501, 3000, 5000])
def test_a_large_group_arrives_whole(count: int) -> None:
    server = RangedServer(members(count))
    first = server.first()
    whole = complete_ranges(DN, first, server.fetch)
    assert whole["member"] == members(count)
    assert whole["cn"] == [b"All Staff"]
    assert not any(";" in name for name in whole)
    expected_asks = [f"member;range={low}-*" for low in range(1500, count, 1500)]
    assert server.asked == expected_asks


def test_plain_attributes_need_no_follow_up() -> None:
    server = RangedServer(members(10))
    whole = complete_ranges(DN, {"member": members(10)}, server.fetch)
    assert whole == {"member": members(10)} and server.asked == []


def test_a_group_that_vanishes_between_reads_is_an_error_not_a_short_group() -> None:
    server = RangedServer(members(4000))
    first = server.first()
    with pytest.raises(RangeError, match="stopped answering"):
        complete_ranges(DN, first, lambda dn, attr: {})


def test_an_answer_from_the_wrong_place_is_refused() -> None:
    server = RangedServer(members(4000))
    first = server.first()

    def wrong(dn: str, attr: str) -> dict[str, list[bytes]]:
        return {"member;range=1000-2499": members(1500)}

    with pytest.raises(RangeError, match="from value 1000, asked from 1500"):
        complete_ranges(DN, first, wrong)


def test_a_range_with_fewer_values_than_it_claims_is_refused() -> None:
    with pytest.raises(RangeError, match="values for a range"):
        complete_ranges(DN, {"member;range=0-1499": members(20)}, RangedServer([]).fetch)


def test_an_empty_range_that_is_not_the_last_is_refused() -> None:
    # A server looping on empty answers must not keep us reading for ever.
    def empty(dn: str, attr: str) -> dict[str, list[bytes]]:
        low = parse_range(attr).low  # type: ignore[union-attr]
        return {f"member;range={low}-{low - 1 if low else 0}": []}

    with pytest.raises(RangeError):
        complete_ranges(DN, {"member;range=0-1": members(2)}, empty)


def test_the_number_of_values_is_bounded() -> None:
    server = RangedServer(members(3500), window=1000)
    with pytest.raises(RangeError, match="more than 2000 values"):
        complete_ranges(DN, server.answer(0), server.fetch, max_values=2000)
