"""Map a function over items in worker processes, with its progress (destseg.runtime.pace)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
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
    stops the pool), die on SIGTERM without a word, and die with this process when it is killed
    (``kill -9``), instead of each printing a BrokenPipeError traceback when it finds nobody to
    hand its result to.
    """
    items = list(items)
    workers = min(workers, len(items))
    quiet = not progress
    if workers <= 1:
        yield from paced(map(fn, items), len(items), description, quiet=quiet)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_quiet_worker, initargs=(os.getpid(),)) as pool:
        chunksize = max(1, len(items) // (workers * 8))
        imap = pool.imap if ordered else pool.imap_unordered
        yield from paced(
            imap(fn, items, chunksize=chunksize), len(items), description, quiet=quiet
        )


def _quiet_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":  # PR_SET_PDEATHSIG: SIGKILL this worker when its parent dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
