"""CPU work beside the device's: the next item read and the last result written in threads.

make_cam and propagate spend milliseconds per image decoding JPEGs and compressing files, which
on a GPU would leave it idle for longer than its own work takes. PIL, zlib and numpy release the
GIL, so one thread each for reading ahead and for writing overlaps them with the network. One
thread each keeps the order: the files and scores are those of a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(items: Sequence[T], load: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """Yield ``(item, load(item))`` in order, loading the next item in a thread while the
    caller works on this one. An error in ``load`` is raised here, for its item."""
    if not items:
        return
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(load, items[0])
        for index, item in enumerate(items):
            loaded = pending.result()
            if index + 1 < len(items):
                pending = reader.submit(load, items[index + 1])
            yield item, loaded


class _Writer:
    def __init__(self, pool: ThreadPoolExecutor):
        self._pool = pool
        self._last: Future | None = None

    def submit(self, fn: Callable[..., object], *args) -> None:
        """Run ``fn(*args)`` in the thread after the previous task has finished (one in flight
        keeps memory bounded); an error of the previous task is raised here."""
        self.wait()
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        if self._last is not None:
            last, self._last = self._last, None
            last.result()


@contextmanager
def writer() -> Iterator[_Writer]:
    """A thread that runs submitted tasks one at a time, in order; leaving the block waits for
    the last one and raises its error."""
    with ThreadPoolExecutor(1) as pool:
        tasks = _Writer(pool)
        yield tasks
        tasks.wait()
