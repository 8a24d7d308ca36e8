"""Map a function over items in worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.progress import track

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, description: str
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item (in no particular order with several workers).

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    One worker runs in this process, which keeps tracebacks and debuggers simple.
    """
    items = list(items)
    if workers <= 1:
        yield from track(map(fn, items), total=len(items), description=description)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.imap_unordered(fn, items, chunksize=max(1, len(items) // (workers * 8)))
        yield from track(results, total=len(items), description=description)
