"""Choosing a background threshold on images that are not reported.

Every variant of the method gets its own threshold, picked where its mIoU is best on a tuning
list (``splits.tune``) that is disjoint from the reported one: a threshold picked on the
reported images is an oracle, and one fixed for all variants favours the variant it was tuned
with (destruction learning spreads activation, so its best threshold sits higher).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from destseg.evaluation.metrics import foreground_precision_recall, segmentation_scores

# The candidate thresholds of every sweep: the CAMs and propagated CAMs are in [0, 1].
SWEEP_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def candidates(fixed: float | None = None) -> list[float]:
    """The sweep grid, with a user's fixed threshold added so that it is scored too."""
    grid = {float(t) for t in SWEEP_THRESHOLDS}
    if fixed is not None:
        grid.add(float(fixed))
    return sorted(grid)


def sweep_table(thresholds: Sequence[float], confusions: np.ndarray) -> pd.DataFrame:
    """One row per threshold (ascending as given): miou, fg_precision, fg_recall."""
    rows = []
    for threshold, confusion in zip(thresholds, confusions, strict=True):
        precision, recall = foreground_precision_recall(confusion)
        rows.append(
            {
                "threshold": float(threshold),
                "miou": segmentation_scores(confusion)["miou"],
                "fg_precision": precision,
                "fg_recall": recall,
            }
        )
    return pd.DataFrame(rows)


def best_threshold(table: pd.DataFrame) -> float:
    """The threshold of the highest mIoU; on a tie the lowest such threshold, so that the
    choice does not depend on floating-point noise in the order of the rows."""
    if table.empty:
        raise ValueError("no threshold was scored")
    best = table["miou"].max()
    return float(table.loc[table["miou"] == best, "threshold"].min())


@dataclass(frozen=True)
class ThresholdPolicy:
    """A background threshold param as the user set it: a number, or ``auto`` (the best one on
    the tuning images). make_cam and refine both follow it; ``param`` names it in messages
    (``cam.threshold``, ``refine.bg_threshold``, ...)."""

    param: str
    value: float | str

    @property
    def auto(self) -> bool:
        return self.value == "auto"

    @property
    def needs_tuning(self) -> str | None:
        """The param that needs a tuning list (its name, under ``auto``), else None."""
        return self.param if self.auto else None

    @property
    def fixed(self) -> float | None:
        """The user's number, or None under ``auto``."""
        return None if self.auto else float(self.value)

    def sweep(self) -> list[float]:
        """The thresholds to score: the whole grid, with the user's number among them."""
        return candidates(self.fixed)

    def tuning_sweep(self) -> list[float]:
        """The thresholds to score on the tuning images where each costs much (a CRF per
        threshold): the grid under ``auto``, the user's number alone otherwise."""
        return candidates() if self.auto else [self.fixed]

    def choose(self, tuning: pd.DataFrame | None) -> tuple[float, dict[str, float]]:
        """The threshold (the best of the ``tuning`` table under ``auto``, else the number) and
        its score on the tuning images, ``{"tune_miou": ...}``, or ``{}`` without a table."""
        if self.auto:
            if tuning is None:
                raise ValueError(f"{self.param}: auto needs the scores of the tuning images")
            threshold = best_threshold(tuning)
        else:
            threshold = self.fixed
        if tuning is None:
            return threshold, {}
        miou = tuning.loc[tuning["threshold"] == threshold, "miou"].iloc[0]
        return threshold, {"tune_miou": float(miou)}

    def described(self) -> str:
        """Where the threshold came from, for the stage's last line."""
        return "tuned on splits.tune" if self.auto else self.param
