"""``refine.method``: which pseudo-masks the pipeline makes, and so whether the affinity stages
have work to do.

Apart from the rest of ``refine`` (the refine stage's business), so that aff_labels reads and
depends on only the method: editing the ``refine`` schema must not rerun the affinity stages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

RefineMethod = Literal["crf", "affinity", "affinity+crf"]
# The methods that need the affinity stages (aff_labels, train_aff, propagate).
AFFINITY_METHODS = ("affinity", "affinity+crf")


class RefineMethodParams(BaseModel):
    """``refine.method`` alone (the other keys of ``refine`` are ignored here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    method: RefineMethod
