"""Section ``aff_labels`` (stage aff_labels): the confident regions AffinityNet learns from."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator

from stages.params.base import Section
from stages.params.crf import CrfParams


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
