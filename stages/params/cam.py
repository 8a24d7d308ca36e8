"""Section ``cam`` (stage make_cam): how CAMs are computed and the threshold they are scored at."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool

from stages.params.base import Scales, Section, Threshold


class CamParams(Section):
    scales: Scales
    flip: StrictBool
    threshold: Threshold
    batch_size: Annotated[int, Field(ge=1)]
