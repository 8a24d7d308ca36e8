"""Section ``splits``: which image lists of the dataset each stage reads
(ImageSets/Segmentation/<name>.txt); the rules between them are
:mod:`destseg.dataset.splits`."""

from __future__ import annotations

from pathlib import Path

from stages.params.base import ListName, Section
from stages.params.reader import read_params


class SplitParams(Section):
    """Which image lists of the dataset each stage reads (ImageSets/Segmentation/<name>.txt)."""

    train: ListName
    val: ListName
    # The train images on which the CAMs and pseudo-masks are scored (with masks); None: they
    # are made and used, not scored (training images with tags and no masks).
    score_cams: ListName | None
    # Images with masks inside ``train`` and outside ``score_cams`` on which the ``auto``
    # thresholds are chosen; None: no tuning list (every threshold must then be a number).
    tune: ListName | None = None


def read_splits(path: Path) -> SplitParams:
    """The ``splits`` section: which image lists the stages read."""
    return read_params(path, "splits", SplitParams)
