"""The schema of params.yaml: one pydantic model per section, named after the stage reading it.

Validation happens before any work: an unknown key, a wrong type or a value out of range stops
the stage with one line naming the parameter. Booleans are strict, so ``pretrained: "no"`` is an
error rather than true.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

# The names destseg.models.backbone.BACKBONES accepts (a test keeps the two equal); spelled out
# so that reading params does not import torch.
Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
Probability = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
Scales = Annotated[list[Positive], Field(min_length=1)]


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
    seed: Annotated[int, Field(ge=0)]
    synthetic: SyntheticParams
    voc2012: Voc2012Params
    folder: FolderParams


class SplitParams(Section):
    """Which image lists of the dataset each stage reads (ImageSets/Segmentation/<name>.txt)."""

    train: str
    val: str
    score_cams: str


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
    threshold: Annotated[float, Field(gt=0, lt=1)]


class CrfParams(Section):
    iterations: Annotated[int, Field(ge=1)]
    gaussian_sxy: Positive
    gaussian_compat: Annotated[float, Field(ge=0)]
    bilateral_sxy: Positive
    bilateral_srgb: Positive
    bilateral_compat: Annotated[float, Field(ge=0)]


class AffLabelsParams(Section):
    """Confident regions of the CAMs that AffinityNet learns from (stage aff_labels)."""

    conf_fg: Annotated[float, Field(gt=0, lt=1)]
    conf_bg: Annotated[float, Field(gt=0, lt=1)]
    crf: StrictBool
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


RefineMethod = Literal["crf", "affinity", "affinity+crf"]
# The methods that need the affinity stages (aff_labels, train_aff, propagate).
AFFINITY_METHODS = ("affinity", "affinity+crf")


class RefineParams(Section):
    method: RefineMethod
    bg_threshold: Annotated[float, Field(gt=0, lt=1)]
    propagated_bg_threshold: Annotated[float, Field(gt=0, lt=1)]
    min_confidence: Probability
    workers: Annotated[int, Field(ge=1)]
    crf: CrfParams


class EvaluateParams(Section):
    scales: Scales
    flip: StrictBool


class RunParams(Section):
    """The top-level keys: the training seed and the device."""

    seed: Annotated[int, Field(ge=0)]
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
