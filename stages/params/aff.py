"""Section ``aff`` (stage train_aff): AffinityNet and its training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from destseg.models.configs import MAX_RADIUS, MIN_RADIUS
from stages.params.train import TrainParams


class AffParams(TrainParams):
    """AffinityNet and its training (stage train_aff)."""

    radius: Annotated[int, Field(ge=MIN_RADIUS, le=MAX_RADIUS)]
    feature_stride: Literal[4, 8]
