"""Section ``evaluate`` (stage evaluate): how the segmenter predicts the val images."""

from __future__ import annotations

from pydantic import StrictBool

from stages.params.base import Scales, Section


class EvaluateParams(Section):
    scales: Scales
    flip: StrictBool
