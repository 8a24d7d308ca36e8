"""The hyperparameters every training shares: the base of sections ``cls``, ``aff`` and
``seg``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from destseg.models.configs import MAX_CROP, Backbone, OutputStride
from stages.params.base import Positive, Section

# The backbones and bounds come from destseg.models.configs, which model files pass too. Those
# backbones without ImageNet weights are spelled out here so that reading params does not
# import torch (a test keeps them equal to destseg.models.backbone.UNTRAINED, and likewise for
# the freezing, unary and normalisation choices of the other sections).
UNTRAINED_BACKBONES = ("resnet10",)


class TrainParams(Section):
    """Hyperparameters shared by the classifier (``cls``), AffinityNet (``aff``) and the
    segmenter (``seg``)."""

    backbone: Backbone
    output_stride: OutputStride
    pretrained: StrictBool
    crop_size: Annotated[int, Field(ge=16, le=MAX_CROP)]
    scale_range: Annotated[tuple[Positive, Positive], Field(strict=False)]  # a YAML list
    color_jitter: Annotated[float, Field(ge=0, le=1)]
    batch_size: Annotated[int, Field(ge=1)]
    epochs: Annotated[int, Field(ge=1)]
    optimizer: Literal["sgd", "adamw"]
    lr: Positive
    head_lr_mult: Positive
    weight_decay: Annotated[float, Field(ge=0)]
    momentum: Annotated[float, Field(ge=0, lt=1)]
    poly_power: Annotated[float, Field(ge=0)]
    workers: Annotated[int, Field(ge=0)]
    # micro-batches per step: each process runs batch_size / (dist.nproc * accumulate) images
    # at a time and adds up their gradients before the step
    accumulate: Annotated[int, Field(ge=1)]
    freeze_bn: StrictBool
    freeze_through: Literal["none", "stem", "layer1", "layer2", "layer3", "layer4"]

    @model_validator(mode="after")
    def _freezing_needs_pretrained_weights(self) -> TrainParams:
        if (self.freeze_bn or self.freeze_through != "none") and not self.pretrained:
            raise ValueError(
                "freeze_bn and freeze_through keep ImageNet statistics and weights: they need "
                "pretrained: true"
            )
        return self

    @model_validator(mode="after")
    def _weights_exist(self) -> TrainParams:
        if self.pretrained and self.backbone in UNTRAINED_BACKBONES:
            raise ValueError(
                f"torchvision has no ImageNet weights for {self.backbone}: set pretrained: false "
                f"or choose resnet18 or larger"
            )
        return self

    @model_validator(mode="after")
    def _batch_splits(self) -> TrainParams:
        if self.batch_size % self.accumulate:
            raise ValueError(
                f"batch_size ({self.batch_size}) does not split into accumulate "
                f"({self.accumulate}) micro-batches of equal size"
            )
        return self

    @field_validator("scale_range")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"the minimum {value[0]} exceeds the maximum {value[1]}")
        return value
