"""One stage in several processes: torch.distributed's process group as torchrun sets it up,
and the three things the stages need from it: a shard of an image list per process, sums
across processes (confusion matrices, loss totals) and one process that writes.

torchrun (``torch.distributed.run``) starts the processes and tells each its place through
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...); :func:`process_group`
joins them with NCCL on GPUs and gloo on the CPU. Outside torchrun everything here is a world
of one process and costs nothing, so the same stage code runs either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from destseg.runtime.files import LOCKS_HELD_BY, atomic_path, temporary_paths
from destseg.runtime.torchrun_env import under_torchrun

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes running one stage."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    # where the tensors of collectives live: the process's GPU under NCCL, else the CPU
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """The process that writes outputs, metrics and logs (rank 0)."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of ``items``: every ``size``-th one from position ``rank``.
        Interleaved rather than in blocks, so that lists sorted by anything (VOC's ids are
        by year) give every process a similar mix of image sizes."""
        return list(items)[self.rank :: self.size]

    def share(self, count: int) -> int:
        """This process's part of ``count`` CPU workers for the whole stage (at least one):
        each of 8 processes starting all 16 of a machine's CRF workers would start 128."""
        return max(1, count // self.size + (self.rank < count % self.size))

    def sum(self, array: np.ndarray) -> np.ndarray:
        """``array`` summed over the processes (every process gets the total). Integer counts
        stay exact; this is how confusion matrices merge, never the predictions."""
        if self.size == 1:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def unshard(self, rows: np.ndarray, count: int) -> np.ndarray:
        """The ``rows`` every process computed for its :meth:`shard` of ``count`` items, put
        back in the items' order (every process gets them all)."""
        whole = np.zeros((count, *rows.shape[1:]), dtype=rows.dtype)
        whole[self.rank :: self.size] = rows
        return self.sum(whole)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.size > 1:
            dist.barrier()

    def local_device(self, device: torch.device) -> torch.device:
        """The device this process runs its network on: with several processes on CUDA, the
        GPU of its local rank (one process per GPU), whatever index ``device`` names."""
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device


@contextmanager
def shared_directory(path: Path, world: World, owner: str) -> Iterator[Path]:
    """:func:`~destseg.runtime.files.atomic_path` of a folder that every process of ``world`` writes
    its shard of files into: the main process creates the temporary folder before anyone
    writes and moves it onto ``path`` only after everyone has written; ``owner``: the stage
    whose output it is (the folder's marker)."""
    if world.size == 1:
        with atomic_path(path, directory=True, owner=owner) as tmp:
            yield tmp
        return
    if not world.main:
        world.barrier()  # the folder exists
        yield temporary_paths(path)[0]
        world.barrier()  # everyone has written
        return
    with atomic_path(path, directory=True, owner=owner) as tmp:
        world.barrier()
        yield tmp
        world.barrier()


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the process group torchrun set up, for the duration of the block; outside torchrun
    yield a world of one process. ``device`` (what the params ask for) chooses the backend:
    NCCL for CUDA, gloo for the CPU. One process on ``cuda:N`` makes N the current device, so
    that what allocates on "the" GPU (cuDNN workspaces, ``torch.cuda`` calls without an index)
    uses the one the params name."""
    if not under_torchrun():
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        yield World()
        return
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise ValueError(
                f"dist.nproc: process {local_rank} on this machine needs GPU {local_rank}, and "
                f"{visible} are visible; run at most one process per GPU"
            )
        torch.cuda.set_device(local_rank)
        comm_device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        comm_device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend)
    try:
        yield World(rank, size, local_rank, comm_device)
    finally:
        dist.destroy_process_group()


def cpu_threads(nproc: int) -> int:
    """The intra-op threads each of ``nproc`` processes on this machine gets: the cores this
    process may use, shared out (two torch processes that each take every core slow each
    other down several times over)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // nproc)


def launch(nproc: int, module: str, args: Sequence[str]) -> None:
    """Run ``python -m <module> <args>`` in ``nproc`` processes under torchrun on this machine
    (``--standalone``: a rendezvous on a free local port) and wait for them.

    A failed worker makes torchrun stop the others; that becomes a ``ChildProcessError`` (the
    workers' own messages are already on stderr). SIGTERM or Ctrl-C stops the workers and
    becomes a ``KeyboardInterrupt`` whose argument is the signal's number. Each worker gets
    ``OMP_NUM_THREADS`` from :func:`cpu_threads` unless the caller set it (torchrun itself
    would give each one thread).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", str(cpu_threads(nproc)))
    os.environ[LOCKS_HELD_BY] = str(os.getpid())  # the workers are this process's children
    config = parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", module, *args])
    try:
        run(config)
    except ChildFailedError as err:
        raise ChildProcessError(
            f"dist.nproc: {len(err.failures)} of {nproc} processes failed (their errors are above)"
        ) from None
    except SignalException as err:
        raise KeyboardInterrupt(int(err.sigval)) from None
