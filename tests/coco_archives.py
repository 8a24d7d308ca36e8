"""MS COCO 2014 archives built in memory, laid out as the official ones (train2014.zip,
val2014.zip, annotations_trainval2014.zip with real-format instances files), for the tests that
run the ``coco2014`` source against a server on 127.0.0.1.

Every image holds filled polygons whose annotations are those polygons; the first training image
also has a crowd region as uncompressed RLE, and one image per split has no annotation at all
(the source drops it). The mask rule itself is tested on hand-drawn records
(tests/dataset/test_coco2014.py)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# COCO's 80 categories with their ids (1..90, with gaps), as instances_*.json lists them
CATEGORIES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}  # fmt: skip
CLASSES = ["background", *CATEGORIES.values()]
# (width, height) of common COCO images: landscape 4:3, portrait, 3:2
COCO_SIZES = [(640, 480), (480, 640), (640, 427)]
COCO_SIZES_QUARTER = [(160, 120), (120, 160), (160, 107)]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def polygon_area(points: list[float]) -> float:
    xs, ys = np.array(points[0::2]), np.array(points[1::2])
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a bool mask: run lengths over the column-major pixels,
    starting with a run of zeros (as crowd annotations store it)."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


@dataclass(frozen=True)
class CocoShaped:
    train: bytes
    val: bytes
    annotations: bytes
    train_ids: list[str]  # the images with annotations, sorted
    val_ids: list[str]
    labels: dict[str, list[int]]  # class indices 1..80 per kept image


def _objects(rng: np.random.Generator, width: int, height: int, count: int) -> list[list[float]]:
    """``count`` random quadrilaterals inside the image, each about a quarter of its side."""
    shapes = []
    for _ in range(count):
        cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
        r = rng.uniform(0.12, 0.25) * min(width, height)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 4))
        points = []
        for a in angles:
            points += [round(float(cx + r * np.cos(a)), 2), round(float(cy + r * np.sin(a)), 2)]
        shapes.append(points)
    return shapes


def coco_shaped_archives(
    sizes: list[tuple[int, int]] = COCO_SIZES, train_images: int = 3, val_images: int = 2
) -> CocoShaped:
    """The three archives: ``train_images`` + 1 train images and ``val_images`` + 1 val images
    cycling through ``sizes``, the last of each split without annotations; category ids drawn
    from all 80 (with their gaps), the first train image's classes id 1 and 90 (the ends)."""
    rng = np.random.default_rng(0)
    category_ids = list(CATEGORIES)
    index = {c: i + 1 for i, c in enumerate(category_ids)}
    members: dict[str, dict[str, bytes]] = {"train": {}, "val": {}}
    annotation_files, kept, labels = {}, {}, {}
    next_annotation = 1
    for split, count, start in (("train", train_images, 9), ("val", val_images, 42)):
        folder = f"{split}2014"
        images, annotations, kept[split] = [], [], []
        for n in range(count + 1):
            number = start + 7 * n
            name = f"COCO_{folder}_{number:012d}"
            width, height = sizes[n % len(sizes)]
            picture = Image.new("RGB", (width, height), (90, 110, 100))
            draw = ImageDraw.Draw(picture)
            images.append(
                {"id": number, "file_name": f"{name}.jpg", "width": width, "height": height}
            )
            if n == count:  # no annotation: dropped, as the public lists drop it
                members[split][f"{folder}/{name}.jpg"] = jpeg(picture)
                continue
            if split == "train" and n == 0:
                chosen = [1, 90]
            else:
                chosen = list(rng.choice(category_ids, size=2, replace=False))
            shapes = _objects(rng, width, height, len(chosen))
            for category, points in zip(chosen, shapes, strict=True):
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                draw.polygon(list(zip(points[0::2], points[1::2], strict=True)), fill=colour)
                annotations.append(
                    {
                        "id": next_annotation,
                        "image_id": number,
                        "category_id": int(category),
                        "segmentation": [points],
                        "area": polygon_area(points),
                        "bbox": [min(points[0::2]), min(points[1::2]), 1, 1],
                        "iscrowd": 0,
                    }
                )
                next_annotation += 1
            if split == "train" and n == 0:  # a crowd region of class 1 along the bottom
                crowd = np.zeros((height, width), dtype=bool)
                crowd[height - height // 8 :, : width // 3] = True
                draw.rectangle((0, height - height // 8, width // 3 - 1, height - 1), "white")
                annotations.append(
                    {
                        "id": next_annotation,
                        "image_id": number,
                        "category_id": 1,
                        "segmentation": uncompressed_rle(crowd),
                        "area": float(crowd.sum()),
                        "bbox": [0, height - height // 8, width // 3, height // 8],
                        "iscrowd": 1,
                    }
                )
                next_annotation += 1
            members[split][f"{folder}/{name}.jpg"] = jpeg(picture)
            kept[split].append(name)
            labels[name] = sorted({index[int(c)] for c in chosen})
        categories = [{"id": c, "name": n, "supercategory": "x"} for c, n in CATEGORIES.items()]
        content = {"info": {}, "images": images, "annotations": annotations}
        content["categories"] = categories
        annotation_files[f"annotations/instances_{folder}.json"] = json.dumps(content).encode()
        annotation_files[f"annotations/captions_{folder}.json"] = b"{}"  # not extracted
    return CocoShaped(
        zip_bytes(members["train"]),
        zip_bytes(members["val"]),
        zip_bytes(annotation_files),
        sorted(kept["train"]),
        sorted(kept["val"]),
        labels,
    )
