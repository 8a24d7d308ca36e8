"""The reading-ahead and writing threads of make_cam and propagate."""

import threading
import time

import pytest
import torch

from destseg.runtime.overlap import overlaps, prefetch, writer


def test_prefetch_yields_in_order_and_loads_the_next_item_meanwhile():
    started = []

    def load(item):
        started.append(item)
        return item * 10

    seen = []
    for item, loaded in prefetch([1, 2, 3], load):
        time.sleep(0.05)  # the caller's work: the next load runs meanwhile
        seen.append((item, loaded, list(started)))
    assert [(i, v) for i, v, _ in seen] == [(1, 10), (2, 20), (3, 30)]
    assert seen[0][2] == [1, 2]  # item 2 was loading while the caller held item 1
    assert list(prefetch([], load)) == []


def test_a_load_error_is_raised_for_its_item_in_the_callers_loop():
    def load(item):
        if item == 2:
            raise ValueError("image 2.jpg: not a readable image")
        return item

    seen = []
    with pytest.raises(ValueError, match=r"2\.jpg"):
        for item, _ in prefetch([1, 2, 3], load):
            seen.append(item)
    assert seen == [1]


def test_the_writer_runs_one_task_at_a_time_in_order_off_the_calling_thread():
    done, threads = [], set()

    def task(n):
        time.sleep(0.01 * (3 - n))  # later tasks are quicker: order must still hold
        threads.add(threading.get_ident())
        done.append(n)

    with writer() as files:
        for n in range(3):
            files.submit(task, n)
    assert done == [0, 1, 2]
    assert threading.get_ident() not in threads


def test_a_write_error_surfaces_at_the_next_submit_or_at_the_end():
    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), writer() as files:
        files.submit(fail)
    with pytest.raises(OSError, match="disk full"), writer() as files:
        files.submit(fail)
        time.sleep(0.01)
        files.submit(print, "never")


def test_unthreaded_every_load_and_task_runs_inline_in_order():
    caller, threads, done = threading.get_ident(), set(), []

    def load(item):
        threads.add(threading.get_ident())
        done.append(f"load {item}")
        return item * 10

    def task(n):
        threads.add(threading.get_ident())
        done.append(f"write {n}")

    with writer(threaded=False) as files:
        for _, loaded in prefetch([1, 2], load, threaded=False):
            files.submit(task, loaded)
            assert done[-1] == f"write {loaded}"  # written before the loop goes on
    assert done == ["load 1", "write 10", "load 2", "write 20"]
    assert threads == {caller}

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), writer(threaded=False) as files:
        files.submit(fail)


def test_threads_run_beside_an_accelerator_only():
    assert overlaps(torch.device("cuda", 0)) and not overlaps(torch.device("cpu"))
