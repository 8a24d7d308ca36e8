"""Section ``propagate`` (stage propagate): the random walk over the predicted affinities."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from stages.params.base import Positive, Section


class PropagateParams(Section):
    """The random walk over the predicted affinities (stage propagate)."""

    beta: Positive
    exp_times: Annotated[int, Field(ge=0, le=12)]
    normalize: Literal["global", "per_class"]
