"""parallel_map: every result once, the first failing item's error, no worker left behind."""

import multiprocessing
import time

import pytest

from destseg.runtime.workers import parallel_map


def _square(x: int) -> int:
    return x * x


def _fails_from(x: int) -> int:
    if x >= 30:
        time.sleep(0.01 * (40 - x))  # the later items fail first in time
        raise ValueError(f"item {x} failed")
    return x


def test_every_item_once_in_order_or_as_they_finish():
    items = list(range(100))
    assert list(parallel_map(_square, items, 2, "t", ordered=True, progress=False)) == [
        x * x for x in items
    ]
    unordered = parallel_map(_square, items, 2, "t", progress=False)
    assert sorted(unordered) == [x * x for x in items]


def test_an_error_names_the_first_failing_item_and_no_worker_outlives_the_map():
    before = set(multiprocessing.active_children())
    with pytest.raises(ValueError, match="item 30 failed"):
        list(parallel_map(_fails_from, range(40), 2, "t", ordered=True, progress=False))
    assert set(multiprocessing.active_children()) <= before


def _fails_at_once_or_sleeps(x: int) -> int:
    if x == 0:
        raise ValueError("item 0 failed")
    time.sleep(30)
    return x


def test_an_error_stops_the_other_workers_instead_of_waiting_for_their_chunks():
    """Item 0 fails at once while the other worker sleeps through a chunk of 30 s items: the
    error surfaces in seconds (a shutdown that waited for the running chunk would take a
    minute), and the sleeping worker is gone."""
    before = set(multiprocessing.active_children())
    start = time.monotonic()
    with pytest.raises(ValueError, match="item 0 failed"):
        list(parallel_map(_fails_at_once_or_sleeps, range(32), 2, "t", progress=False))
    assert time.monotonic() - start < 20
    assert set(multiprocessing.active_children()) <= before
