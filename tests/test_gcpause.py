"""paused_gc: the collector is off inside, and back as it was after."""

from __future__ import annotations

import gc

import pytest

from dirsync.directories.gcpause import paused_gc


def test_collector_is_off_inside_and_on_again_after_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with paused_gc():
            assert not gc.isenabled()
            with paused_gc():  # nested: the inner exit must not switch it on
                pass
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_frozen_heap_freezes_what_exists_and_hands_it_back_after() -> None:
    from dirsync.directories.gcpause import frozen_heap

    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # nested: the inner exit must not hand it back
            pass
        assert gc.get_freeze_count() == frozen
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0


def test_frozen_heap_collects_young_objects_less_often_and_restores_after() -> None:
    from dirsync.directories.gcpause import YOUNG_THRESHOLD, frozen_heap

    before = gc.get_threshold()
    with frozen_heap():
        during = gc.get_threshold()
        assert during[0] == max(before[0], YOUNG_THRESHOLD) and during[1:] == before[1:]
        with frozen_heap():
            pass
        assert gc.get_threshold() == during
        # Cyclic garbage is still collected meanwhile, only later.
        for _ in range(3 * YOUNG_THRESHOLD):
            loop: list[object] = []
            loop.append(loop)
        assert gc.get_count()[0] < YOUNG_THRESHOLD + 100
    assert gc.get_threshold() == before
