"""Section ``dist``: how many processes run each training and inference stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from stages.params.base import Section
from stages.params.reader import read_params


class DistParams(Section):
    """How many processes run each training and inference stage (torchrun on this machine)."""

    nproc: Annotated[int, Field(ge=1, le=1024)]


def read_dist(path: Path) -> DistParams:
    """The ``dist`` section: how many processes run the stage."""
    return read_params(path, "dist", DistParams)
