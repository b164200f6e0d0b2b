"""A Bloom filter of fixed size over strings: "surely not added" or "maybe".

What keeps a set of a million keys on disk (:mod:`dirsync.directories.firstseen`,
:mod:`dirsync.sync.scratch`) asks this first, so that a key never seen costs
no query. 2**23 bits (1 MiB) by default, whatever the number of keys (a
table that may stay small starts smaller and is made again larger as it
fills, :class:`dirsync.sync.scratch.DiskMap`); three probes taken from the
key's hash, which Python salts per process: a crafted input cannot aim at
the bits, and a false "maybe" costs one query, no more.
"""

from __future__ import annotations

#: log2 of the bits of the largest filter, the default.
BITS = 23


class Bloom:
    __slots__ = ("bits", "mask", "width")

    def __init__(self, width: int = BITS) -> None:
        self.width = width
        self.mask = (1 << width) - 1
        self.bits = bytearray(1 << (width - 3))

    def capacity(self) -> int:
        """Keys this filter holds at about 3% false "maybe" (8 bits a key)."""
        return len(self.bits)

    def add(self, key: str) -> None:
        h = hash(key)
        bits, mask, width = self.bits, self.mask, self.width
        a, b, c = h & mask, (h >> width) & mask, (h >> (2 * width)) & mask
        bits[a >> 3] |= 1 << (a & 7)
        bits[b >> 3] |= 1 << (b & 7)
        bits[c >> 3] |= 1 << (c & 7)

    def maybe(self, key: str) -> bool:
        """False when ``key`` was surely never added."""
        h = hash(key)
        bits, mask, width = self.bits, self.mask, self.width
        a, b, c = h & mask, (h >> width) & mask, (h >> (2 * width)) & mask
        return bool(bits[a >> 3] >> (a & 7) & 1 and bits[b >> 3] >> (b & 7) & 1
                    and bits[c >> 3] >> (c & 7) & 1)
