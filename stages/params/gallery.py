"""Section ``gallery`` (stage gallery): which images the gallery draws, and how large."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from stages.params.base import ImageId, Section, Seed


class GalleryParams(Section):
    """Which images the gallery draws (from ``splits.score_cams``, and the worst of
    ``splits.val``) and how large."""

    images: Annotated[int, Field(ge=1)]
    seed: Seed
    # A fixed list instead of a seeded sample (each must be in splits.score_cams).
    ids: list[ImageId] = Field(default_factory=list)
    size: Annotated[int, Field(ge=32, le=1024)]
    # the segmenter on held-out images: the N worst of splits.val by mIoU (evaluate's per-image
    # table), each with its truth and evaluate's prediction (0: none)
    val_images: Annotated[int, Field(ge=0)] = 0

    @field_validator("ids")
    @classmethod
    def _unique(cls, ids: list[str]) -> list[str]:
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return ids
