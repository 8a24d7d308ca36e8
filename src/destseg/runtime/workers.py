"""Map a function over items in worker processes, with its progress (destseg.runtime.pace)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from destseg.runtime.pace import paced

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    description: str,
    ordered: bool = False,
    progress: bool = True,
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item: in the items' order with ``ordered`` (an error then
    surfaces for the first failing item, whatever the timing), else as they finish. The bar
    shows only with ``progress`` (the main process of several draws it).

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    One worker runs in this process, which keeps tracebacks and debuggers simple.

    Workers leave interrupts to this process: they ignore Ctrl-C (this process gets it too and
    kills them), die on SIGTERM without a word, and die with this process when it is killed
    (``kill -9``), instead of each printing a BrokenPipeError traceback when it finds nobody to
    hand its result to. The items go to ``concurrent.futures``' executor in chunks, and on an
    error or an interrupt this process kills the workers itself before shutting the executor
    down (``multiprocessing.Pool.terminate``, used before, once stayed stuck for minutes after
    a worker's error: docs/testing.md).
    """
    items = list(items)
    workers = min(workers, len(items))
    quiet = not progress
    if workers <= 1:
        yield from paced(map(fn, items), len(items), description, quiet=quiet)
        return
    size = max(1, len(items) // (workers * 8))
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    others = set(multiprocessing.active_children())
    executor = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_quiet_worker,
        initargs=(os.getpid(),),
    )
    workers_of_this_map = set()
    try:
        futures = [executor.submit(_apply, fn, chunk) for chunk in chunks]
        # the executor forks all its workers at the first submit (the fork context)
        workers_of_this_map = set(multiprocessing.active_children()) - others
        done = futures if ordered else as_completed(futures)
        results = (result for future in done for result in future.result())
        yield from paced(results, len(items), description, quiet=quiet)
    except BaseException:
        # an error or an interrupt: stop the workers now rather than let them finish their
        # chunks (minutes of CRFs); the executor sees them gone and shuts down
        for process in workers_of_this_map:
            process.kill()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _apply(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    """``fn`` over one chunk of items, in a worker (module level: it is pickled)."""
    return [fn(item) for item in chunk]


def _quiet_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":  # PR_SET_PDEATHSIG: SIGKILL this worker when its parent dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
