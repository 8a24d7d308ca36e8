"""Section ``aff`` (stage train_aff): AffinityNet and its training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from stages.params.train import TrainParams


class AffParams(TrainParams):
    """AffinityNet and its training (stage train_aff)."""

    radius: Annotated[int, Field(ge=2, le=12)]
    feature_stride: Literal[4, 8]
