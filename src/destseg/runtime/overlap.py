"""CPU work beside the device's: the next item read and the last result written in threads.

make_cam and propagate spend milliseconds per image decoding JPEGs and compressing files, which
on a GPU would leave it idle for longer than its own work takes. PIL, zlib and numpy release the
GIL, so one thread each for reading ahead and for writing overlaps them with the network. One
thread each keeps the order: the files and scores are those of a plain loop.

Only beside an accelerator: when the network itself runs on the CPU, its threads already take
every core, and threads beside them slow it more than they save (measured: propagate on the
demo's 80 images took 3.0 s with them and 1.9 s without, on 2 cores): :func:`overlaps` says
whether a device gets them, and ``threaded=False`` runs the same work inline, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def overlaps(device: torch.device) -> bool:
    """Whether reading and writing in threads pays beside a network on ``device``: on an
    accelerator, not on the CPU (see above)."""
    return device.type != "cpu"


def prefetch(
    items: Sequence[T], load: Callable[[T], R], threaded: bool = True
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, load(item))`` in order, loading the next item in a thread while the
    caller works on this one (inline when not ``threaded``). An error in ``load`` is raised
    here, for its item."""
    if not threaded:
        yield from ((item, load(item)) for item in items)
        return
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
    def __init__(self, pool: ThreadPoolExecutor | None):
        self._pool = pool  # None: tasks run inline
        self._last: Future | None = None

    def submit(self, fn: Callable[..., object], *args) -> None:
        """Run ``fn(*args)`` in the thread after the previous task has finished (one in flight
        keeps memory bounded); an error of the previous task is raised here."""
        self.wait()
        if self._pool is None:
            fn(*args)
            return
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        if self._last is not None:
            last, self._last = self._last, None
            last.result()


@contextmanager
def writer(threaded: bool = True) -> Iterator[_Writer]:
    """A thread that runs submitted tasks one at a time, in order; leaving the block waits for
    the last one and raises its error. Not ``threaded``, each task runs as submitted."""
    if not threaded:
        yield _Writer(None)
        return
    with ThreadPoolExecutor(1) as pool:
        tasks = _Writer(pool)
        yield tasks
        tasks.wait()
