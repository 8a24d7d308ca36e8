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
