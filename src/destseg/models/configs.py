"""What a network may be built from: the schema of the ``config`` a model file stores, with the
bounds the params that build it share.

A model file comes from elsewhere as often as from this machine, and its config decides how
much memory the network takes: an MDC grid of 400 or an affinity radius of 100,000 asks for
gigabytes in the first forward pass. Loading validates the stored config against these models
before any network is built, and the params sections (stages/params) draw their bounds from
the same constants. No torch here: reading params must not need it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from destseg.dataset.layout import MAX_OBJECT_CLASSES


def feature_size(side: int, output_stride: int, stage: int = 4) -> int:
    """The side of the feature map after ResNet ``stage`` (1-4) for an input side, with the
    last stages dilated to ``output_stride``: each stride-2 layer gives ceil(n / 2)."""
    stride = min(2 ** (stage + 1), output_stride) if stage < 4 else output_stride
    return math.ceil(side / stride)


# The names destseg.models.backbone.BACKBONES accepts (a test keeps the two equal).
Backbone = Literal["resnet10", "resnet18", "resnet34", "resnet50", "resnet101"]
OutputStride = Literal[8, 16, 32]
# The LDM's and the MDC's grids: the paper's are 2 to 8 cells a side; 64 leaves room to
# explore and keeps the MDC's patch convolutions (grid x grid of them) small.
MAX_GRID = 64
# Training crops: IRN and PSA crop 448 or 512 px, DeepLab 513 and 769 on Cityscapes; a crop
# of 1024 px is as large as one GPU's batch can take, and 20,000 a slip.
MAX_CROP = 1024
# AffinityNet's radius in feature pixels: IRN and PSA use 5 (PSA infers at 8 in places);
# 12 is the most its pair tensors (about pi r^2 / 2 offsets per pixel) fit comfortably.
MIN_RADIUS, MAX_RADIUS = 2, 12


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class LdmConfig(_Config):
    grid: Annotated[int, Field(ge=1, le=MAX_GRID)]
    k: Annotated[int, Field(ge=0, le=MAX_GRID)]
    probability: Annotated[float, Field(ge=0, le=1)]


class MdcConfig(_Config):
    grid: Annotated[int, Field(ge=1, le=MAX_GRID)]
    position: Literal[3, 4]
    shared: bool
    activation: bool


class ClassifierConfig(_Config):
    backbone: Backbone
    num_classes: Annotated[int, Field(ge=1, le=MAX_OBJECT_CLASSES)]  # object classes
    output_stride: OutputStride
    ldm: LdmConfig | None = None
    mdc: MdcConfig | None = None
    recam: bool = False


class SegmenterConfig(_Config):
    backbone: Backbone
    num_classes: Annotated[int, Field(ge=2, le=MAX_OBJECT_CLASSES + 1)]  # with the background
    output_stride: OutputStride


class AffinityConfig(_Config):
    backbone: Backbone
    output_stride: OutputStride
    feature_stride: Literal[4, 8]
    radius: Annotated[int, Field(ge=MIN_RADIUS, le=MAX_RADIUS)]


# By the KIND a model file names.
CONFIGS: dict[str, type[_Config]] = {
    "classifier": ClassifierConfig,
    "segmenter": SegmenterConfig,
    "affinity": AffinityConfig,
}
