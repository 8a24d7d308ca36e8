"""The dense CRF's settings: part of sections ``aff_labels`` and ``refine``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from stages.params.base import Positive, Section


class CrfParams(Section):
    iterations: Annotated[int, Field(ge=1)]
    gaussian_sxy: Positive
    gaussian_compat: Annotated[float, Field(ge=0)]
    bilateral_sxy: Positive
    bilateral_srgb: Positive
    bilateral_compat: Annotated[float, Field(ge=0)]
