"""Whether this process is one of torchrun's workers: read from the environment alone, so
that the stages without torch (prepare) can ask too."""

from __future__ import annotations

import os

# What torchrun puts in every worker's environment ...
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# ... beside this, which no shell and no other launcher sets: torchrun's own mark.
TORCHRUN_MARK = "TORCHELASTIC_RUN_ID"


class StrayTorchrunVariables(ValueError):
    """torchrun's variables are set, and torchrun did not start this process."""


def under_torchrun() -> bool:
    """Whether this process was started by torchrun. torchrun's variables without its mark
    (``export RANK=0`` left in a shell) are refused: taken at their word, the stage would wait
    for processes that never come, for torch's 30-minute default."""
    present = [name for name in TORCHRUN_ENV if name in os.environ]
    if TORCHRUN_MARK in os.environ and len(present) == len(TORCHRUN_ENV):
        return True
    if present:
        values = ", ".join(f"{name}={os.environ[name][:20]!r}" for name in present)
        raise StrayTorchrunVariables(
            f"{values} in the environment, yet torchrun did not start this process (no "
            f"{TORCHRUN_MARK}): unset them (a shell's leftover) or start the stage with torchrun"
        )
    return False
