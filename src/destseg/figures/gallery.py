"""Gallery figures: what each step of the pipeline made of one image, side by side.

A weakly supervised method is judged by where its CAM fires and what its pseudo-masks keep, so
the gallery shows, for one image, the image itself, the CAM of each labelled class as a heat
map over it, the confident regions, the propagated CAMs, the pseudo-mask, the segmenter's
prediction and the ground truth, with the class names and their colours in a legend. Labels
use the VOC palette, as the masks on disk do. Only numpy and PIL: a figure is a grid of tiles,
nothing a plotting library would add to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from destseg.dataset.layout import IGNORE_INDEX, voc_palette

# Heat-map colours from cold to hot (blue, cyan, yellow, red) at these CAM values.
HEAT_STOPS = np.array([0.0, 0.35, 0.65, 1.0])
HEAT_COLOURS = np.array([[0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0]], dtype=float)
TITLE_HEIGHT = 14
PALETTE = np.array(voc_palette(), dtype=np.uint8).reshape(-1, 3)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """RGB colours (..., 3) float of values in [0, 1] (clipped): blue when low, red when high."""
    values = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(values, HEAT_STOPS, HEAT_COLOURS[:, c]) for c in range(3)], axis=-1)


def cam_overlay(image: np.ndarray, cam: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """The image (H, W, 3) uint8 with a CAM (H, W) in [0, 1] laid over it: each pixel blends
    towards the CAM's heat colour in proportion to the CAM, so where the CAM is zero the image
    is unchanged and where it is one the hot colour covers ``opacity`` of it."""
    if cam.shape != image.shape[:2]:
        raise ValueError(f"CAM of size {cam.shape} for an image of size {image.shape[:2]}")
    weight = opacity * np.clip(cam, 0.0, 1.0)[..., None]
    blended = image * (1 - weight) + heat_colours(cam) * weight
    return np.round(blended).astype(np.uint8)


def mask_colours(mask: np.ndarray) -> np.ndarray:
    """A label map (H, W) as RGB (H, W, 3) in the VOC palette (255, ignored: the palette's
    cream border colour)."""
    return PALETTE[mask]


def label_overlay(image: np.ndarray, labels: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """A label map's palette colours over the image (H, W, 3) uint8 at ``opacity``, the
    background (0) left as it is: where a prediction falls on the image."""
    colours = mask_colours(labels).astype(np.float32)
    blend = (1 - opacity) * image.astype(np.float32) + opacity * colours
    return np.where((labels == 0)[..., None], image, blend.round()).astype(np.uint8)


def _tile(array: np.ndarray, size: int) -> Image.Image:
    """An RGB array resized (nearest neighbour: labels stay labels) so that its longer side is
    ``size``."""
    image = Image.fromarray(array)
    scale = size / max(image.size)
    return image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.NEAREST
    )


LEGEND_ROW = 14  # pixels per legend row
CHAR_WIDTH = 6  # PIL's default bitmap font


def legend_rows(legend: Sequence[tuple[str, int]], width: int) -> list[list[tuple[int, str, int]]]:
    """The legend entries as rows of (x, name, label) that fit in ``width`` pixels: COCO's
    images can hold a dozen classes with long names, more than one row of four panels holds."""
    rows: list[list[tuple[int, str, int]]] = [[]]
    x = 2
    for name, label in legend:
        entry = 13 + CHAR_WIDTH * len(name)
        if rows[-1] and x + entry > width - 2:
            rows.append([])
            x = 2
        rows[-1].append((x, name, label))
        x += entry + 10
    return rows


def figure(
    panels: Sequence[tuple[str, np.ndarray]],
    legend: Sequence[tuple[str, int]],
    size: int,
) -> Image.Image:
    """One row of titled tiles (``panels``: title, RGB array), each with its longer side
    ``size``, above a legend of (class name, label) swatches in the palette's colours, in as
    many rows as the width needs."""
    tiles = [(title, _tile(array, size)) for title, array in panels]
    height = max(tile.height for _, tile in tiles)
    width = sum(tile.width for _, tile in tiles)
    rows = legend_rows(legend, width)
    canvas = Image.new("RGB", (width, TITLE_HEIGHT + height + LEGEND_ROW * len(rows) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, tile in tiles:
        draw.text((x + 2, 1), title[: tile.width // CHAR_WIDTH], fill="black")
        canvas.paste(tile, (x, TITLE_HEIGHT))
        x += tile.width
    for row, entries in enumerate(rows):
        y = TITLE_HEIGHT + height + 3 + LEGEND_ROW * row
        for x, name, label in entries:
            draw.rectangle((x, y, x + 10, y + 10), fill=tuple(int(c) for c in PALETTE[label]))
            draw.text((x + 13, y), name, fill="black")
    return canvas


def legend_for(labels: Sequence[int], classes: Sequence[str]) -> list[tuple[str, int]]:
    """The legend entries of the labels that occur (background first, ``ignored`` last)."""
    present = sorted(set(int(label) for label in labels))
    entries = [(classes[label], label) for label in present if label != IGNORE_INDEX]
    if IGNORE_INDEX in present:
        entries.append(("ignored", IGNORE_INDEX))
    return entries
