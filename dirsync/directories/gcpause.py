"""Keeping Python's cyclic garbage collector out of bulk work.

:func:`paused_gc` switches it off while bulk data is built;
:func:`frozen_heap` keeps it from walking, again and again, what a sync
run loaded before it started.

Reading a large file creates hundreds of thousands of long-lived objects
(entries, their lists and values); the collector, triggered by the count
of new objects, then walks all of them again and again, which measured
close to half the time of reading 20,000 LDIF records. Those objects hold
no reference cycles, so nothing is lost by collecting once afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Collector off for the block, back to what it was after (nestable)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_frozen = [0]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """What exists now (modules, a compiled mapping) kept out of the collector's
    walks for the block (nestable), and handed back to it after.

    A sync run makes and drops a few dozen objects per entry; each time they
    add up to a collection of the oldest generation, the collector walked
    every object of the interpreter again, most of them the modules and
    templates loaded before the run: a tenth of a first sync's time.
    """
    _frozen[0] += 1
    if _frozen[0] == 1:
        gc.freeze()
    try:
        yield
    finally:
        _frozen[0] -= 1
        if _frozen[0] == 0:
            gc.unfreeze()
