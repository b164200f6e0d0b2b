"""Range retrieval of attribute values (MS-ADTS 3.1.1.3.1.3.3).

Active Directory returns at most MaxValRange values of a multi-valued
attribute in one answer (1,500 by default, 5,000 on recent versions): it
then names the attribute ``member;range=0-1499`` instead of ``member``. The
client asks again for ``member;range=1500-*`` and so on, until an answer
whose range ends in ``*``. A group of 5,000 members arrives whole only if
every range is followed.

The server's answers are foreign input: each range must start where it
was asked to, carry exactly as many values as it claims, move forward,
and the whole is bounded (:data:`MAX_VALUES`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dirsync.errors import DirectoryError

#: ``attr;range=low-high`` or ``attr;range=low-*``; other options may
#: stand before the range (``member;binary;range=0-1499`` is not used by
#: AD, but an option list is an option list).
_RANGED = re.compile(r"^(?P<attr>[A-Za-z0-9-]+(?:;(?!range=)[A-Za-z0-9-]+)*)"
                     r";range=(?P<low>\d{1,10})-(?P<high>\d{1,10}|\*)$", re.IGNORECASE)

#: The most values one attribute of one object may bring through ranges:
#: far above AD's own limits for a group (it warns past 5,000 linked
#: values per answer), and a bound on what a hostile server can make us hold.
MAX_VALUES = 1_000_000

#: Fetches ``[attribute with range option]`` of ``dn`` again: the
#: attributes of the answer (empty when the object is gone).
Fetch = Callable[[str, str], dict[str, list[bytes]]]


class RangeError(DirectoryError):
    """A ranged answer that cannot be followed to its end."""


@dataclass(frozen=True)
class Range:
    attr: str
    low: int
    high: int | None  # None: ``*``, the last values

    @property
    def final(self) -> bool:
        return self.high is None


def parse_range(name: str) -> Range | None:
    """The range an attribute description carries, or None for a plain one."""
    match = _RANGED.match(name)
    if match is None:
        return None
    low = int(match.group("low"))
    high_text = match.group("high")
    high = None if high_text == "*" else int(high_text)
    if high is not None and high < low:
        raise RangeError(f"attribute {name!r}: a range that ends before it starts")
    return Range(match.group("attr"), low, high)


def check_step(name: str, step: Range, values: list[bytes], expected_low: int) -> None:
    """A range answer as MS-ADTS describes it, or RangeError."""
    if step.low != expected_low:
        raise RangeError(f"attribute {name!r}: the server answered from value {step.low}, "
                         f"asked from {expected_low}")
    if step.high is not None and len(values) != step.high - step.low + 1:
        raise RangeError(f"attribute {name!r}: {len(values)} values for a range of "
                         f"{step.high - step.low + 1}")


def complete_ranges(dn: str, attrs: dict[str, list[bytes]], fetch: Fetch,
                    max_values: int = MAX_VALUES) -> dict[str, list[bytes]]:
    """``attrs`` with every ranged attribute read to its end and named plainly.

    ``fetch(dn, "member;range=1500-*")`` reads the next range. Raises
    :class:`RangeError` when the answers do not fit together (the object
    changed or vanished between two reads, or a server that misbehaves):
    a group cut short must never pass for the whole group.
    """
    out: dict[str, list[bytes]] = {}
    for name, values in attrs.items():
        step = parse_range(name)
        if step is None:
            out.setdefault(name, []).extend(values)
            continue
        collected = _follow(dn, name, step, list(values), fetch, max_values)
        out.setdefault(step.attr, []).extend(collected)
    return out


def _follow(dn: str, name: str, step: Range, values: list[bytes], fetch: Fetch,
            max_values: int) -> list[bytes]:
    # The first answer to a plain request starts at the first value.
    check_step(name, step, values, 0)
    collected = values
    while not step.final:
        assert step.high is not None
        if len(collected) > max_values:
            raise RangeError(f"{dn}: attribute {step.attr!r} has more than {max_values} "
                             "values")
        low = step.high + 1
        answer = fetch(dn, f"{step.attr};range={low}-*")
        found = _ranged_value(answer, step.attr)
        if found is None:
            raise RangeError(f"{dn}: the server stopped answering for {step.attr!r} at "
                             f"value {low} (the object changed or went away while it was "
                             "read)")
        next_name, nxt, next_values = found
        check_step(next_name, nxt, next_values, low)
        if not nxt.final and not next_values:
            raise RangeError(f"{dn}: an empty range of {step.attr!r} that is not the last")
        collected.extend(next_values)
        step = nxt
    if len(collected) > max_values:
        raise RangeError(f"{dn}: attribute {step.attr!r} has more than {max_values} values")
    return collected


def _ranged_value(answer: dict[str, list[bytes]],
                  attr: str) -> tuple[str, Range, list[bytes]] | None:
    """The ranged attribute ``attr`` in a follow-up answer."""
    lower = attr.lower()
    for name, values in answer.items():
        step = parse_range(name)
        if step is not None and step.attr.lower() == lower:
            return name, step, values
    return None
