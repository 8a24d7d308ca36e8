"""The schema of params.yaml: one pydantic model per section, named after the stage reading it.

Validation happens before any work: an unknown key, a wrong type or a value out of range stops
the stage with one line naming the parameter. Booleans are strict, so ``pretrained: "no"`` is an
error rather than true.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    field_validator,
    model_validator,
)

from destseg.ids import check_id

# The names destseg.models.backbone.BACKBONES accepts (a test keeps the two equal, and likewise
# for the freezing, unary and normalisation choices below); spelled out so that reading params
# does not import torch.
Backbone = Literal["resnet10", "resnet18", "resnet34", "resnet50", "resnet101"]
# ... and those of them without ImageNet weights (destseg.models.backbone.UNTRAINED)
UNTRAINED_BACKBONES = ("resnet10",)
Probability = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
Scales = Annotated[list[Positive], Field(min_length=1)]
# torch seeds are signed 64-bit integers
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


def _threshold(value: object) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"must be a number between 0 and 1 (exclusive) or auto, got {value!r}")
    return float(value)


# A background threshold: a number, or ``auto``: the best one on ``splits.tune``.
Threshold = Annotated[float | Literal["auto"], PlainValidator(_threshold)]

# destseg.device.AMP_MODES
AMP_MODES = ("auto", "bf16", "fp16", "off")


def _amp(value: object) -> str:
    if value is False:  # PyYAML (YAML 1.1), which reads params.yaml, takes a bare `off` as false
        return "off"
    if value not in AMP_MODES:
        raise ValueError(f"must be one of {', '.join(AMP_MODES)}, got {value!r}")
    return str(value)


Amp = Annotated[Literal["auto", "bf16", "fp16", "off"], PlainValidator(_amp)]


# A list name becomes ImageSets/Segmentation/<name>.txt: a plain file stem, as ids are.
ListName = Annotated[str, AfterValidator(partial(check_id, where="list name"))]


def feature_size(side: int, output_stride: int, stage: int = 4) -> int:
    """The side of the feature map after ResNet ``stage`` (1-4) for an input side, with the
    last stages dilated to ``output_stride``: each stride-2 layer gives ceil(n / 2)."""
    stride = min(2 ** (stage + 1), output_stride) if stage < 4 else output_stride
    return math.ceil(side / stride)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticParams(Section):
    num_classes: Annotated[int, Field(ge=1, le=254)]
    image_size: Annotated[int, Field(ge=32)]
    train_images: Annotated[int, Field(ge=1)]
    val_images: Annotated[int, Field(ge=1)]
    min_objects: Annotated[int, Field(ge=1)]
    max_objects: Annotated[int, Field(ge=1)]
    min_object_size: Annotated[float, Field(gt=0, le=1)]
    max_object_size: Annotated[float, Field(gt=0, le=1)]
    part_size: Annotated[float, Field(gt=0, le=1)]
    part_offset: Annotated[float, Field(ge=0, le=0.5)]
    body_thinness: Annotated[float, Field(gt=0, le=1)]
    part_saliency: Probability
    body_saliency: Probability
    clutter: Probability
    noise: Annotated[float, Field(ge=0)]
    boundary_ignore: Annotated[int, Field(ge=0)]


Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Url = Annotated[str, Field(pattern=r"^(https?|file)://")]


class Voc2012Params(Section):
    """Where the VOC 2012 and SBD archives come from (a mirror keeps the official MD5)."""

    download_dir: str
    voc_url: Url
    voc_md5: Md5
    sbd_url: Url
    sbd_md5: Md5


class FolderParams(Section):
    """A VOC-layout folder the user brings, and its class names (background first)."""

    root: str
    classes: list[str]


class DataParams(Section):
    source: Literal["synthetic", "voc2012", "folder"]
    seed: Seed
    synthetic: SyntheticParams
    voc2012: Voc2012Params
    folder: FolderParams


class SplitParams(Section):
    """Which image lists of the dataset each stage reads (ImageSets/Segmentation/<name>.txt)."""

    train: ListName
    val: ListName
    score_cams: ListName
    # Images with masks inside ``train`` and outside ``score_cams`` on which the ``auto``
    # thresholds are chosen; None: no tuning list (every threshold must then be a number).
    tune: ListName | None = None


class TrainParams(Section):
    """Hyperparameters shared by the classifier (``cls``) and the segmenter (``seg``)."""

    backbone: Backbone
    output_stride: Literal[8, 16, 32]
    pretrained: StrictBool
    crop_size: Annotated[int, Field(ge=16)]
    scale_range: Annotated[tuple[Positive, Positive], Field()]
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


class LdmParams(Section):
    """Low-Level Destruction Module: region confusion of the input image."""

    enabled: StrictBool
    grid: Annotated[int, Field(ge=1)]
    k: Annotated[int, Field(ge=0)]
    probability: Probability


class MdcParams(Section):
    """Mid-Level Distribution-and-Collection Module: patch-wise convolution of features."""

    enabled: StrictBool
    grid: Annotated[int, Field(ge=1)]
    position: Literal[3, 4]
    shared: StrictBool
    activation: StrictBool


class ClsParams(TrainParams):
    ldm: LdmParams
    mdc: MdcParams

    @model_validator(mode="after")
    def _modules_fit_the_crop(self) -> ClsParams:
        if self.ldm.enabled and self.ldm.grid > self.crop_size:
            raise ValueError(
                f"ldm.grid ({self.ldm.grid}) is larger than crop_size ({self.crop_size}): the "
                "LDM needs cells of at least one pixel"
            )
        if self.mdc.enabled:
            mdc_side = feature_size(self.crop_size, self.output_stride, self.mdc.position)
            if self.mdc.grid > mdc_side:
                raise ValueError(
                    f"mdc.grid ({self.mdc.grid}) is larger than the {mdc_side}x{mdc_side} "
                    f"feature map the MDC sees on a crop of {self.crop_size} px (encoder stage "
                    f"{self.mdc.position}, output_stride {self.output_stride})"
                )
        return self

    def variant(self) -> dict:
        """The destruction modules as the classifier takes them: settings, or None when off."""
        return {
            "ldm": self.ldm.model_dump(exclude={"enabled"}) if self.ldm.enabled else None,
            "mdc": self.mdc.model_dump(exclude={"enabled"}) if self.mdc.enabled else None,
        }


class SegParams(TrainParams):
    labels: Literal["pseudo", "gt"]


class CamParams(Section):
    scales: Scales
    flip: StrictBool
    threshold: Threshold
    batch_size: Annotated[int, Field(ge=1)]


class CamScalesParams(BaseModel):
    """``cam.scales`` alone: train_cls reads it to refuse, before training, a classifier whose
    CAMs could not be computed at those scales (the rest of ``cam`` is make_cam's business)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scales: Scales


class CrfParams(Section):
    iterations: Annotated[int, Field(ge=1)]
    gaussian_sxy: Positive
    gaussian_compat: Annotated[float, Field(ge=0)]
    bilateral_sxy: Positive
    bilateral_srgb: Positive
    bilateral_compat: Annotated[float, Field(ge=0)]


class AffLabelsCrfParams(CrfParams):
    """The CRF that snaps the confident regions to image edges (stage aff_labels)."""

    enabled: StrictBool
    unary: Literal["probability", "label"]
    gt_prob: Annotated[float, Field(gt=0, lt=1)]


class AffLabelsParams(Section):
    """Confident regions of the CAMs that AffinityNet learns from (stage aff_labels)."""

    conf_fg: Annotated[float, Field(gt=0, lt=1)]
    conf_bg: Annotated[float, Field(gt=0, lt=1)]
    crf: AffLabelsCrfParams
    workers: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _ordered(self) -> AffLabelsParams:
        if self.conf_bg > self.conf_fg:
            raise ValueError(f"conf_bg ({self.conf_bg}) must not exceed conf_fg ({self.conf_fg})")
        return self


class AffParams(TrainParams):
    """AffinityNet and its training (stage train_aff)."""

    radius: Annotated[int, Field(ge=2, le=12)]
    feature_stride: Literal[4, 8]


class PropagateParams(Section):
    """The random walk over the predicted affinities (stage propagate)."""

    beta: Positive
    exp_times: Annotated[int, Field(ge=0, le=12)]
    normalize: Literal["global", "per_class"]


RefineMethod = Literal["crf", "affinity", "affinity+crf"]
# The methods that need the affinity stages (aff_labels, train_aff, propagate).
AFFINITY_METHODS = ("affinity", "affinity+crf")


class RefineParams(Section):
    method: RefineMethod
    bg_threshold: Threshold
    propagated_bg_threshold: Threshold
    min_confidence: Probability
    workers: Annotated[int, Field(ge=1)]
    crf: CrfParams


class RefineMethodParams(BaseModel):
    """``refine.method`` alone: aff_labels reads it to know whether affinity is needed (the rest
    of ``refine`` is the refine stage's business, and must not rerun aff_labels)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    method: RefineMethod


class EvaluateParams(Section):
    scales: Scales
    flip: StrictBool


ImageId = Annotated[str, AfterValidator(partial(check_id, where="image id"))]


class GalleryParams(Section):
    """Which images the gallery draws (from ``splits.score_cams``) and how large."""

    images: Annotated[int, Field(ge=1)]
    seed: Seed
    # A fixed list instead of a seeded sample (each must be in splits.score_cams).
    ids: list[ImageId] = []
    size: Annotated[int, Field(ge=32, le=1024)]


class DistParams(Section):
    """How many processes run each training and inference stage (torchrun on this machine)."""

    nproc: Annotated[int, Field(ge=1, le=1024)]


class RunParams(Section):
    """The top-level keys: the training seed, the device and the precision networks run in."""

    seed: Seed
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
    amp: Amp


# Every section of params.yaml and its schema (besides the top-level RunParams keys): a test
# keeps this equal to the file's sections, so no section goes unvalidated.
SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataParams,
    "dist": DistParams,
    "splits": SplitParams,
    "cls": ClsParams,
    "cam": CamParams,
    "aff_labels": AffLabelsParams,
    "aff": AffParams,
    "propagate": PropagateParams,
    "refine": RefineParams,
    "seg": SegParams,
    "evaluate": EvaluateParams,
    "gallery": GalleryParams,
}
