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
