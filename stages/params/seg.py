"""Section ``seg`` (stage train_seg): the segmenter and its training."""

from __future__ import annotations

from typing import Literal

from stages.params.train import TrainParams


class SegParams(TrainParams):
    labels: Literal["pseudo", "gt"]
