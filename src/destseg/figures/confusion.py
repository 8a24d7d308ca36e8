"""The normalised confusion matrix as a picture: which classes a label map takes for which.

The stages count pixel confusion matrices (rows: ground truth, columns: label); a row divided
by its total says where the pixels of one class went, its diagonal entry being that class's
recall. DVC's ``confusion_normalized`` template cannot draw this: it counts one data row per
sample, which for VOC's val pixels would be about 10^8 rows. So the matrix is normalised here
and drawn as an image plot, which also renders offline, unlike DVC's Vega-Lite charts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from destseg.runtime.files import atomic_path

CELL = 26  # pixels per matrix cell: room for "100"
CHAR_WIDTH = 6  # PIL's default bitmap font
EMPTY_ROW = (210, 210, 210)  # a class absent from the ground truth: nothing to normalise
TITLE = "rows: ground truth, columns: label, % of each row"


def normalised_confusion(confusion: np.ndarray) -> np.ndarray:
    """Each row of a (K, K) pixel confusion matrix divided by its total: entry (c, k) is the
    share of class c's pixels labelled k. Rows of classes absent from the ground truth are NaN
    (no share can be stated), not zero (which would read as "all missed")."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, confusion / totals, np.nan)


def share_colour(share: float) -> tuple[int, int, int]:
    """White for 0, dark blue for 1, linear in between."""
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    return tuple(round(c) for c in white + (blue - white) * float(np.clip(share, 0, 1)))


def confusion_figure(confusion: np.ndarray, classes: Sequence[str]) -> Image.Image:
    """The normalised matrix as a grid of cells shaded by share, each share of at least 1 %
    written in it; rows named ``index name``, columns by index (VOC's 21 names do not fit
    above 26-pixel columns)."""
    shares = normalised_confusion(confusion)
    count = len(classes)
    if shares.shape != (count, count):
        raise ValueError(f"a {shares.shape} confusion matrix for {count} classes")
    left, top, _, _ = cell_box(0, 0, classes)
    width = max(left + count * CELL, CHAR_WIDTH * len(TITLE) + 8) + 4
    canvas = Image.new("RGB", (width, top + count * CELL + 4), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), TITLE, fill="black")
    for k in range(count):
        draw.text((left + k * CELL + 4, top - CELL + 8), str(k), fill="black")
    for c, name in enumerate(_row_names(classes)):
        draw.text((4, top + c * CELL + 8), name, fill="black")
        for k in range(count):
            box = cell_box(c, k, classes)
            share = shares[c, k]
            fill = EMPTY_ROW if np.isnan(share) else share_colour(share)
            draw.rectangle(box, fill=fill, outline=(235, 235, 235))
            x, y = box[:2]
            if not np.isnan(share) and share >= 0.01:
                ink = "white" if share > 0.5 else "black"
                draw.text((x + 3, y + 8), f"{round(100 * share)}", fill=ink)
    return canvas


def _row_names(classes: Sequence[str]) -> list[str]:
    return [f"{index} {name}" for index, name in enumerate(classes)]


def cell_box(row: int, column: int, classes: Sequence[str]) -> tuple[int, int, int, int]:
    """The pixel box (left, top, right, bottom) of a cell in ``confusion_figure``'s picture:
    below the title and the column numbers, right of the longest row name."""
    left = CHAR_WIDTH * max(len(name) for name in _row_names(classes)) + 8
    x, y = left + column * CELL, 2 * CELL + row * CELL
    return x, y, x + CELL - 1, y + CELL - 1


def save_confusion_figure(path: Path, confusion: np.ndarray, classes: Sequence[str]) -> None:
    """Write ``confusion_figure`` as a PNG at ``path``, atomically."""
    with atomic_path(path) as tmp:
        confusion_figure(confusion, classes).save(tmp, format="PNG")
