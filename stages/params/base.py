"""What every section of params.yaml is built from: the strict, frozen section model and the
field types several sections share.

Validation happens before any work: an unknown key, a wrong type or a value out of range stops
the stage with one line naming the parameter. Types are strict, so ``pretrained: "no"`` is an
error rather than true and ``seed: true`` an error rather than seed 1; numbers must be finite
(``.inf`` and ``.nan`` are YAML numbers that no parameter means).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator

from destseg.dataset.ids import check_id

Probability = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
# Inference scales: IRN's CAMs go up to 2.0 and DeepLab's multi-scale evaluation to 1.75; the
# bound of 4 catches a slip (60 for 0.6 would ask for gigabytes per VOC image) before any work.
MAX_SCALE = 4.0
Scales = Annotated[list[Annotated[float, Field(gt=0, le=MAX_SCALE)]], Field(min_length=1)]
# torch seeds are signed 64-bit integers
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


def _threshold(value: object) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"must be a number between 0 and 1 (exclusive) or auto, got {value!r}")
    return float(value)


# A background threshold: a number, or ``auto``: the best one on ``splits.tune``
# (destseg.evaluation.thresholds.ThresholdPolicy).
Threshold = Annotated[float | Literal["auto"], PlainValidator(_threshold)]

# A list name becomes ImageSets/Segmentation/<name>.txt: a plain file stem, as ids are.
ListName = Annotated[str, AfterValidator(partial(check_id, where="list name"))]
ImageId = Annotated[str, AfterValidator(partial(check_id, where="image id"))]


class Section(BaseModel):
    """A section of params.yaml: unknown keys are refused, values cannot be changed, types are
    strict (an integer is accepted for a float, nothing else converts) and numbers finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
