"""Section ``seg`` (stage train_seg): the segmenter and its training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from stages.params.train import TrainParams


class SegParams(TrainParams):
    labels: Literal["pseudo", "gt"]
    # the validation mIoU of the training curves: every val_every epochs and after the last (0:
    # none), on the first val_images images of splits.val (None: all), one scale, no flip
    val_every: Annotated[int, Field(ge=0)]
    val_images: Annotated[int, Field(ge=1)] | None
