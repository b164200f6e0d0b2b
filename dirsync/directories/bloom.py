"""A Bloom filter of fixed size over strings: "surely not added" or "maybe".

What keeps a set of a million keys on disk (:mod:`dirsync.directories.firstseen`,
:mod:`dirsync.sync.scratch`) asks this first, so that a key never seen costs
no query. 2**23 bits (1 MiB, whatever the number of keys), three probes
taken from the key's hash, which Python salts per process: a crafted input
cannot aim at the bits, and a false "maybe" costs one query, no more.
"""

from __future__ import annotations

BITS = 23
_MASK = (1 << BITS) - 1


class Bloom:
    __slots__ = ("bits",)

    def __init__(self) -> None:
        self.bits = bytearray(1 << (BITS - 3))

    def add(self, key: str) -> None:
        h = hash(key)
        bits = self.bits
        a, b, c = h & _MASK, (h >> BITS) & _MASK, (h >> (2 * BITS)) & _MASK
        bits[a >> 3] |= 1 << (a & 7)
        bits[b >> 3] |= 1 << (b & 7)
        bits[c >> 3] |= 1 << (c & 7)

    def maybe(self, key: str) -> bool:
        """False when ``key`` was surely never added."""
        h = hash(key)
        bits = self.bits
        a, b, c = h & _MASK, (h >> BITS) & _MASK, (h >> (2 * BITS)) & _MASK
        return bool(bits[a >> 3] >> (a & 7) & 1 and bits[b >> 3] >> (b & 7) & 1
                    and bits[c >> 3] >> (c & 7) & 1)
