"""A stage in several processes: its command run again under torchrun (``dist.nproc``)."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

from stages.cli import InputError, Terminated

if TYPE_CHECKING:
    import torch


def run_in_workers(nproc: int, module: str, device: torch.device | None = None) -> bool:
    """With ``dist.nproc`` > 1 and outside torchrun: run this stage's command again, with the
    same arguments, in ``nproc`` processes under torchrun on this machine, wait for them and
    return True (they did the stage's work). Otherwise return False: this process does it,
    alone or as one of torchrun's processes (started here, or by the user's own torchrun over
    several machines). ``module`` is the stage's module (its ``__spec__.name``); ``device``,
    when the stage runs networks, is checked to have a GPU per process first."""
    import torch  # here, not at the top: the prepare stage has no use for torch

    from destseg.runtime.distributed import launch, under_torchrun

    if nproc == 1 or under_torchrun():
        return False
    cores = len(os.sched_getaffinity(0))
    if (device is None or device.type == "cpu") and nproc > cores:
        raise InputError(
            f"dist.nproc: {nproc} processes on the CPU, and this process may use {cores} cores: "
            "more processes than cores only fight over them (and each holds its own memory)"
        )
    if device is not None and device.type == "cuda" and nproc > torch.cuda.device_count():
        raise InputError(
            f"dist.nproc: {nproc} processes need {nproc} GPUs, and "
            f"{torch.cuda.device_count()} are visible"
        )
    main = sys.modules["__main__"].__spec__
    if main is None or main.name != module:
        raise InputError(
            f"dist.nproc: {nproc} processes run the stage as a command (python -m {module}), "
            "which this process is not"
        )
    print(f"{module}: {nproc} processes (torchrun)", flush=True)
    try:
        launch(nproc, module, sys.argv[1:])
    except KeyboardInterrupt as interrupt:
        if interrupt.args == (signal.SIGTERM,):
            raise Terminated from None
        raise
    return True
