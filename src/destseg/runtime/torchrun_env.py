"""Whether this process is one of torchrun's workers: read from the environment alone, so
that the stages without torch (prepare) can ask too."""

from __future__ import annotations

import os

# What torchrun puts in every worker's environment.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (its variables are in the environment)."""
    return all(name in os.environ for name in TORCHRUN_ENV)
