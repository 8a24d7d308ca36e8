"""Benchmark: checking a VOC-layout folder before import (every image and mask decoded whole).

Writes ``--images`` images of VOC's typical size (500 x 375 JPEG, quality 90, with a palette PNG
mask each) into a temporary folder, then times :func:`destseg.dataset.sources.folder.scan` with 1
worker and with one per CPU, and prints a markdown table. VOC 2012 + SBD has 12,031 listed images.

    python benchmarks/folder_check.py [--images 1000]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.dataset.layout import VOCLayout, save_mask
from destseg.dataset.sources.folder import scan

CLASSES = ["background", "a", "b"]


def write_folder(root: Path, count: int) -> None:
    """``count`` photo-like images (smooth shading plus sensor noise) and their masks."""
    layout = VOCLayout(root)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    ids = [f"img_{i:05d}" for i in range(count)]
    for image_id in ids:
        shade = np.stack([x * rng.uniform(0.2, 0.5), y * rng.uniform(0.2, 0.6), x + y], -1) % 256
        pixels = np.clip(shade + rng.normal(0, 12, shade.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(layout.image_path(image_id), quality=90)
        mask = np.zeros((375, 500), np.uint8)
        mask[100:300, rng.integers(0, 200) :][:, :200] = rng.integers(1, 3)
        save_mask(layout.mask_path(image_id), mask)
    layout.write_split("train", ids)


def main(images: Annotated[int, typer.Option(help="How many images to check.")] = 1000) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "voc"
        write_folder(root, images)
        for workers in sorted({1, os.cpu_count() or 1}):
            start = time.perf_counter()
            scan(root, CLASSES, workers=workers)
            seconds = time.perf_counter() - start
            rows.append(
                {"workers": workers, "seconds": seconds, "ms per image": 1000 * seconds / images}
            )
    table = pd.DataFrame(rows)
    table["speed-up"] = table["seconds"].iloc[0] / table["seconds"]
    print(table.to_markdown(index=False, floatfmt=("g", ".2f", ".2f", ".2f")))


if __name__ == "__main__":
    typer.run(main)
