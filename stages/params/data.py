"""Section ``data`` (stage prepare): the dataset source and its settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from stages.params.base import Probability, Section, Seed


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


class DataParams(Section):
    source: Literal["synthetic", "voc2012", "coco2014", "folder"]
    seed: Seed
    synthetic: SyntheticParams
    voc2012: Voc2012Params
    coco2014: Coco2014Params
    folder: FolderParams
