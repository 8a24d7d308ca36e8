"""Time per image of drawing COCO's semantic masks (:func:`destseg.dataset.sources.coco2014.
write_mask`: the image header read, every instance rasterised with pycocotools, the mask saved as
a palette PNG), on records shaped like COCO train2014's: 640 x 480 images with 7 instances each
(604,907 annotations over 82,081 images: 7.4 on average), polygons of 24 points, every tenth
image with a crowd region as uncompressed RLE. One process; the prepare stage runs one per CPU.

    python benchmarks/coco_masks.py [--images 200]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from coco_archives import uncompressed_rle

from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.coco2014 import ImageRecord, Instance, write_mask

WIDTH, HEIGHT, INSTANCES, POINTS = 640, 480, 7, 24
IMAGES = {"train": 82_081, "val": 40_137}


def record(rng: np.random.Generator, number: int) -> ImageRecord:
    instances = []
    for k in range(INSTANCES):
        cx, cy = rng.uniform(100, 540), rng.uniform(80, 400)
        radii = rng.uniform(20, 120) * rng.uniform(0.6, 1.0, POINTS)
        angles = np.linspace(0, 2 * np.pi, POINTS, endpoint=False)
        polygon = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        area = float(np.pi * radii.mean() ** 2)
        instances.append(Instance(k, int(rng.integers(1, 81)), area, [polygon.ravel().tolist()]))
    if number % 10 == 0:
        crowd = np.zeros((HEIGHT, WIDTH), dtype=bool)
        crowd[300:420, 50:400] = True
        instances.append(Instance(99, 1, float(crowd.sum()), uncompressed_rle(crowd)))
    name = f"COCO_train2014_{number:012d}"
    return ImageRecord(name, f"{name}.jpg", WIDTH, HEIGHT, tuple(instances))


def main(images: Annotated[int, typer.Option(help="Records to draw.")] = 200) -> None:
    rng = np.random.default_rng(0)
    records = [record(rng, n) for n in range(images)]
    with tempfile.TemporaryDirectory() as folder:
        layout = VOCLayout(Path(folder))
        (layout.root / "JPEGImages").mkdir()
        (layout.root / "SegmentationClass").mkdir()
        for r in records:
            Image.new("RGB", (WIDTH, HEIGHT)).save(layout.image_path(r.image_id))
        start = time.perf_counter()
        for r in records:
            write_mask(r, layout.root)
        seconds = (time.perf_counter() - start) / images
    total = sum(IMAGES.values())
    print(f"{1000 * seconds:.1f} ms per image (one process, {images} images of {WIDTH} x {HEIGHT})")
    for processes in (2, 16):
        minutes = total * seconds / processes / 60
        print(f"all {total:,} images in {processes} processes: {minutes:.1f} min")


if __name__ == "__main__":
    typer.run(main)
