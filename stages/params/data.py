"""Section ``data`` (stage prepare): the dataset source and its settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from destseg.dataset.layout import MAX_OBJECT_CLASSES
from stages.params.base import Probability, Section, Seed

# The synthetic data's bounds: images as large as VOC's largest side (500 px) twice over, and
# 100,000 of them, ten times VOC's train_aug: a slip (100000 px a side asks for 149 GiB) is
# refused before any image is drawn.
MAX_IMAGE_SIDE = 1024
MAX_IMAGES = 100_000
MAX_OBJECTS = 64


class SyntheticParams(Section):
    num_classes: Annotated[int, Field(ge=1, le=MAX_OBJECT_CLASSES)]
    image_size: Annotated[int, Field(ge=32, le=MAX_IMAGE_SIDE)]
    train_images: Annotated[int, Field(ge=1, le=MAX_IMAGES)]
    val_images: Annotated[int, Field(ge=1, le=MAX_IMAGES)]
    min_objects: Annotated[int, Field(ge=1, le=MAX_OBJECTS)]
    max_objects: Annotated[int, Field(ge=1, le=MAX_OBJECTS)]
    min_object_size: Annotated[float, Field(gt=0, le=1)]
    max_object_size: Annotated[float, Field(gt=0, le=1)]
    part_size: Annotated[float, Field(gt=0, le=1)]
    part_offset: Annotated[float, Field(ge=0, le=0.5)]
    body_thinness: Annotated[float, Field(gt=0, le=1)]
    part_saliency: Probability
    part_style: Literal["shape", "constellation"]
    part_span: Annotated[float, Field(gt=0, le=1)]
    part_frame: Literal["image", "body"]
    body_saliency: Probability
    clutter: Probability
    noise: Annotated[float, Field(ge=0)]
    boundary_ignore: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> SyntheticParams:
        for low, high in (("min_objects", "max_objects"), ("min_object_size", "max_object_size")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})"
                )
        return self


Md5 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Url = Annotated[str, Field(pattern=r"^(https?|file)://")]


class Voc2012Params(Section):
    """Where the VOC 2012 and SBD archives come from (a mirror keeps the official MD5)."""

    download_dir: str
    voc_url: Url
    voc_md5: Md5
    sbd_url: Url
    sbd_md5: Md5


class Coco2014Params(Section):
    """Where the three MS COCO 2014 archives come from (a mirror keeps the official MD5)."""

    download_dir: str
    train_url: Url
    train_md5: Md5
    val_url: Url
    val_md5: Md5
    annotations_url: Url
    annotations_md5: Md5


class FolderParams(Section):
    """A VOC-layout folder the user brings, and its class names (background first)."""

    root: str
    classes: list[str]
    # a CSV (image,tags) or JSON file of image-level tags; "": labels from XML and masks only
    tags: str = ""


class DataParams(Section):
    source: Literal["synthetic", "voc2012", "coco2014", "folder"]
    seed: Seed
    synthetic: SyntheticParams
    voc2012: Voc2012Params
    coco2014: Coco2014Params
    folder: FolderParams
