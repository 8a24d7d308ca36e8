"""Section ``refine`` (stage refine): the pseudo-masks segmentation trains on."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from stages.params.base import Probability, Section, Threshold
from stages.params.crf import CrfParams
from stages.params.refine_method import RefineMethod


class RefineParams(Section):
    method: RefineMethod
    bg_threshold: Threshold
    propagated_bg_threshold: Threshold
    min_confidence: Probability
    workers: Annotated[int, Field(ge=1)]
    crf: CrfParams
