"""How fast a stage goes and how long it has left, in a terminal and in a log file alike.

Rich's progress bars show the time left in a terminal; written to a file (``dvc repro >
log``, a cluster job's output) they leave one final line per bar, ``13/13 0:00:00``, which
says nothing about the run. So the epoch lines of a training carry the epoch's time, its
images per second and the time left for the stage, and a loop outside a terminal (an epoch's
steps, an image stage's images) prints its count, rate and time left at the tenths of the way,
at most one line every half minute, and its whole time at the end (IRN prints ``imps`` and
``etc``, mmsegmentation ``eta``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")

# a loop outside a terminal reports at the tenths of the way, at most once every EVERY seconds
REPORTS = 10
EVERY = 30.0


def duration(seconds: float) -> str:
    """``seconds`` the way a person reads a wait: 41 s, 6 min 9 s, 2 h 5 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class EpochClock:
    """The pace of a training of ``epochs`` epochs of ``images`` images each (every process
    together): :meth:`lap` turns one epoch's seconds into ``41 s, 12.3 images/s, 6 min 9 s
    left``, the time left from the mean of the epochs timed so far (a resumed run's earlier
    epochs have no time and do not count)."""

    def __init__(self, epochs: int, images: int):
        self.epochs, self.images = epochs, images
        self.timed: list[float] = []

    def lap(self, epoch: int, seconds: float) -> str:
        self.timed.append(seconds)
        left = sum(self.timed) / len(self.timed) * (self.epochs - epoch - 1)
        rate = self.images / seconds if seconds > 0 else float("inf")
        return f"{duration(seconds)}, {rate:.1f} images/s, {duration(left)} left"


def paced(
    items: Iterable[T],
    total: int,
    description: str,
    *,
    quiet: bool = False,
    unit: str = "images",
    every: float = EVERY,
) -> Iterator[T]:
    """``items`` (``total`` of them) with their progress: Rich's bar in a terminal; elsewhere a
    line at the tenths of the way, ``every`` seconds apart at least (``make_cam: 300/1464
    images, 8.0/s, 2 min 25 s left``), and one at the end with the whole time. ``quiet``:
    nothing (the other processes of a torchrun)."""
    if quiet or total == 0:
        yield from items
        return
    if Console().is_terminal:
        yield from track(items, total=total, description=description)
        return
    start = last = time.perf_counter()
    marks = {max(1, round(total * k / REPORTS)) for k in range(1, REPORTS)}
    done = 0
    for item in items:
        yield item
        done += 1
        if done in marks and time.perf_counter() - last >= every:
            last = time.perf_counter()
            elapsed = last - start
            rate = done / elapsed if elapsed > 0 else float("inf")
            left = (total - done) / rate
            print(
                f"{description}: {done}/{total} {unit}, {rate:.1f}/s, {duration(left)} left",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    rate = done / elapsed if elapsed > 0 else float("inf")
    print(f"{description}: {done} {unit} in {duration(elapsed)}, {rate:.1f}/s", flush=True)
