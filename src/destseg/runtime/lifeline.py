"""A stage ends with the process it works for: DVC, or the stage that started it under
torchrun.

``kill -9`` of ``dvc repro`` cannot pass anything on to the stage it runs, which would otherwise
go on alone and later replace an output that a newer ``dvc repro`` recorded (and whose lock it
no longer rightly holds); ``kill -9`` of a stage with ``dist.nproc`` > 1 likewise leaves its
torchrun workers writing. Each of them therefore watches the process it works for through a
pidfd (Linux 5.3 and later) and sends itself SIGTERM when that process ends: the stage stops
as after ``kill``, removing its temporaries. Elsewhere nothing is watched.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from pathlib import Path


def end_with(pid: int) -> bool:
    """Send this process SIGTERM once process ``pid`` has ended; False if it cannot be
    watched here (no pidfd, or the process is already gone)."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return False

    def watch() -> None:
        select.select([handle], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name=f"lifeline-{pid}", daemon=True).start()
    return True


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state


def _is_dvc(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]
    except OSError:
        return False
    return any(os.path.basename(arg) == b"dvc" for arg in argv)


def dvc_ancestor() -> int | None:
    """The ``dvc`` process this one runs under (its shell may stand between), if any."""
    pid = _parent(os.getpid())
    while pid and pid > 1:
        if _is_dvc(pid):
            return pid
        pid = _parent(pid)
    return None
