"""The embedded synthetic dataset: the weakly supervised problem in miniature.

Each object class has two kinds of evidence, as real objects do:

* a small, strongly discriminative **part** (a class-specific shape in a class-specific saturated
  colour, like a face or a wheel), which a classifier finds first and relies on;
* a large **body** (an organic blob) whose class evidence is weak: its colour is only partly
  pulled towards a class colour and it carries a faint stripe texture whose orientation depends
  on the class. Colours of different classes overlap, and the clutter in the background carries
  bodies-like textures of random orientation, so the body alone is ambiguous but not useless.

A classifier trained on image-level labels solves the task from the parts, so its class
activation map covers much less than the object: the gap that weakly supervised segmentation
methods try to close.

The part comes in two styles (``part_style``). ``shape``: a compact class-specific shape in a
class-specific colour, local evidence that survives when the image is cut into cells and
shuffled (the LDM). ``constellation``: four dots of one colour shared by every class, laid out
in a class-specific pattern over ``part_span`` of the body's diameter and centred where a shape
would be (``part_offset``), as a face is an arrangement of eyes, nose and mouth; each dot alone
says nothing of the class, so shuffling the cells that hold them destroys the part's evidence
while the body's texture, inside every cell, survives. That is the situation destruction
learning is designed for.

Everything is deterministic from ``seed``; each image has its own random generator, so an image
does not change when the number of images does.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from destseg.dataset.layout import IGNORE_INDEX, VOCLayout, labels_from_mask, save_mask

Shape = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _rotated(dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.sqrt(0.5)
    return (dy + dx) * s, (dx - dy) * s


def _cross(dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    return ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | (
        (np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r)
    )


# Part shapes, one per class (cycled, with a different colour, beyond eight classes).
# Each takes the offsets from the part centre and the part radius and returns a boolean mask.
PART_SHAPES: dict[str, Shape] = {
    "disk": lambda dy, dx, r: dy**2 + dx**2 <= r**2,
    "square": lambda dy, dx, r: np.maximum(np.abs(dy), np.abs(dx)) <= 0.8 * r,
    "triangle": lambda dy, dx, r: (np.abs(dx) <= (dy + 0.8 * r) * 0.6) & (dy <= 0.8 * r),
    "cross": _cross,
    "ring": lambda dy, dx, r: (dy**2 + dx**2 <= r**2) & (dy**2 + dx**2 >= (0.5 * r) ** 2),
    "diamond": lambda dy, dx, r: np.abs(dy) + np.abs(dx) <= r,
    "bar": lambda dy, dx, r: (np.abs(dy) <= 0.35 * r) & (np.abs(dx) <= r),
    "saltire": lambda dy, dx, r: _cross(*_rotated(dy, dx), r),
}

# Constellations, one per class (cycled beyond eight): four dots at these (dy, dx) offsets in
# units of half the span. Each is symmetric under a left-right flip (a training augmentation),
# and all have four dots, so neither a flip nor the number of dots tells the classes apart.
CONSTELLATIONS: dict[str, tuple[tuple[float, float], ...]] = {
    "row": ((0, -1), (0, -1 / 3), (0, 1 / 3), (0, 1)),
    "column": ((-1, 0), (-1 / 3, 0), (1 / 3, 0), (1, 0)),
    "square": ((-0.7, -0.7), (-0.7, 0.7), (0.7, -0.7), (0.7, 0.7)),
    "diamond": ((-1, 0), (0, -1), (0, 1), (1, 0)),
    "arrow_up": ((-1, 0), (1, -1), (1, 1), (1 / 3, 0)),
    "arrow_down": ((1, 0), (-1, -1), (-1, 1), (-1 / 3, 0)),
    "tee": ((-1, -1), (-1, 0), (-1, 1), (1, 0)),
    "stand": ((1, -1), (1, 0), (1, 1), (-1, 0)),
}
DOT_COLOUR = np.array([1.0, 1.0, 1.0])  # white: the same for every class
PART_STYLES = ("shape", "constellation")
# A constellation's frame: ``image``, its up is the image's up; ``body``, its up points from the
# part towards the body's centre, so that at one end of an elongated body (``part_offset`` > 0) the
# dots lie along the body.
PART_FRAMES = ("image", "body")


@dataclass(frozen=True)
class SyntheticSpec:
    """The knobs of the synthetic dataset (params.yaml ``data.synthetic``)."""

    num_classes: int = 6
    image_size: int = 128
    train_images: int = 400
    val_images: int = 100
    min_objects: int = 1
    max_objects: int = 3
    min_object_size: float = 0.3  # object diameter as a fraction of the image size
    max_object_size: float = 0.55
    part_size: float = 0.25  # part diameter as a fraction of the object diameter
    part_offset: float = 0.0  # part centre from the body centre, + up to 0.35, in body radii
    body_thinness: float = 1.0  # the short axis of a body: 0.6-1 of its long axis, times this
    part_saliency: float = 1.0  # 0: the part has the body's colour; 1: its own colour
    part_style: str = "shape"  # shape: local, class-coloured; constellation: four shared dots
    part_span: float = 0.6  # constellation: extent of the dots, as a fraction of the body diameter
    part_frame: str = "image"  # constellation: its up is the image's, or (body) the body centre
    body_saliency: float = 0.35  # 0: body colour and texture random; 1: fully class-specific
    clutter: float = 0.5  # 0: plain background; 1: many textured distractors
    noise: float = 0.03  # standard deviation of the pixel noise (colours in [0, 1])
    boundary_ignore: int = 1  # width of the 255 band around object borders, as in VOC

    def __post_init__(self) -> None:
        checks = {
            "num_classes": self.num_classes >= 1,
            "image_size": self.image_size >= 32,
            "train_images": self.train_images >= 1,
            "val_images": self.val_images >= 1,
            "min_objects": 1 <= self.min_objects <= self.max_objects,
            "min_object_size": 0 < self.min_object_size <= self.max_object_size <= 1,
            "part_size": 0 < self.part_size <= 1,
            "part_offset": 0 <= self.part_offset <= 0.5,
            "body_thinness": 0 < self.body_thinness <= 1,
            "part_saliency": 0 <= self.part_saliency <= 1,
            "part_style": self.part_style in PART_STYLES,
            "part_span": 0 < self.part_span <= 1,
            "part_frame": self.part_frame in PART_FRAMES,
            "body_saliency": 0 <= self.body_saliency <= 1,
            "clutter": 0 <= self.clutter <= 1,
            "noise": self.noise >= 0,
            "boundary_ignore": self.boundary_ignore >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"synthetic dataset: invalid {name} ({getattr(self, name)})")

    def class_names(self) -> list[str]:
        """Class names, background first; named after their part shape or constellation."""
        shapes = list(PART_SHAPES if self.part_style == "shape" else CONSTELLATIONS)
        names = ["background"]
        for c in range(self.num_classes):
            base = shapes[c % len(shapes)]
            names.append(base if c < len(shapes) else f"{base}{c // len(shapes) + 1}")
        return names


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


@dataclass(frozen=True)
class _ClassLook:
    part_shape: Shape
    part_colour: np.ndarray
    body_colour: np.ndarray
    stripe_angle: float
    stripe_period: float


def _class_looks(spec: SyntheticSpec) -> list[_ClassLook]:
    shapes = list(PART_SHAPES.values())
    k = spec.num_classes
    looks = []
    for c in range(k):
        cycle = c // len(shapes)
        looks.append(
            _ClassLook(
                part_shape=shapes[c % len(shapes)],
                part_colour=_hsv(c / k + 0.37 * cycle, 1.0, 1.0 - 0.3 * (cycle % 2)),
                body_colour=_hsv(c / k + 0.5, 0.55, 0.75),
                stripe_angle=np.pi * c / k,
                stripe_period=5.0 + 2.0 * (c % 3),
            )
        )
    return looks


def _stripes(yy: np.ndarray, xx: np.ndarray, angle: float, period: float, phase: float):
    return np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)


def _blob(yy, xx, cy, cx, radius, rng) -> np.ndarray:
    """An organic blob: a rotated ellipse with a wobbling border."""
    return _oriented_blob(yy, xx, cy, cx, radius, rng)[0]


def _oriented_blob(yy, xx, cy, cx, radius, rng, thinness: float = 1.0) -> tuple[np.ndarray, float]:
    """:func:`_blob`, its short axis ``thinness`` times as long, and the direction of its long
    axis (radians, image x towards y)."""
    angle = rng.uniform(0, np.pi)
    aspect = rng.uniform(0.6, 1.0) * thinness
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / aspect
    theta = np.arctan2(v, u)
    wobble = 1 + 0.12 * np.sin(rng.integers(2, 5) * theta + rng.uniform(0, 2 * np.pi))
    return u**2 + v**2 <= (radius * wobble) ** 2, angle


def _constellation(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    pattern: tuple[tuple[float, float], ...],
    half_span: float,
    dot_radius: float,
    down: tuple[float, float] = (1.0, 0.0),
) -> np.ndarray:
    """The dots (boolean map) of a constellation centred on (cy, cx): one disk of
    ``dot_radius`` at each offset (dy, dx) of ``pattern`` times ``half_span``, dy along the unit
    vector ``down`` (y, x) and dx along it turned a quarter towards +x; (1, 0) lays the pattern
    out as written. A left-right flip of the image turns a pattern laid out along ``down`` into
    its mirror along the flipped ``down``, which is the pattern itself for every constellation."""
    a, b = down
    dots = np.zeros(yy.shape, dtype=bool)
    for dy, dx in pattern:
        shift_y, shift_x = half_span * (dy * a - dx * b), half_span * (dy * b + dx * a)
        dots |= (yy - cy - shift_y) ** 2 + (xx - cx - shift_x) ** 2 <= dot_radius**2
    return dots


def _background(spec: SyntheticSpec, yy, xx, rng) -> np.ndarray:
    size = spec.image_size
    base = _hsv(rng.uniform(), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.85))
    tilt = rng.normal(0, 0.15, size=3)
    ramp = (yy * np.cos(rng.uniform(0, 2 * np.pi)) + xx * np.sin(rng.uniform(0, 2 * np.pi))) / size
    image = base[None, None, :] + ramp[..., None] * tilt[None, None, :]
    n_distractors = rng.poisson(8 * spec.clutter) if spec.clutter > 0 else 0
    for _ in range(n_distractors):
        if rng.uniform() < 0.5:  # a body-like textured blob of random look
            radius = rng.uniform(0.08, 0.25) * size
            region = _blob(yy, xx, rng.uniform(0, size), rng.uniform(0, size), radius, rng)
            colour = _hsv(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9))
            texture = (
                0.3
                * spec.body_saliency
                * _stripes(
                    yy, xx, rng.uniform(0, np.pi), rng.uniform(5, 9), rng.uniform(0, 2 * np.pi)
                )
            )
            image[region] = colour + texture[region][:, None]
        else:  # a small dull blob, the size of a part but with no class colour
            radius = rng.uniform(0.02, 0.06) * size
            region = _blob(yy, xx, rng.uniform(0, size), rng.uniform(0, size), radius, rng)
            image[region] = _hsv(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.9))
    return image


def _boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a change of label (the VOC 'void' outline)."""
    if width == 0:
        return np.zeros(mask.shape, dtype=bool)
    padded = np.pad(mask, width, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * width + 1, 2 * width + 1))
    return windows.min(axis=(-2, -1)) != windows.max(axis=(-2, -1))


def render_image(
    spec: SyntheticSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image (H, W, 3) uint8, its label map (H, W) uint8 with 255 on object borders, and
    the boolean map (H, W) of the visible discriminative parts (for diagnostics only)."""
    size = spec.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    looks = _class_looks(spec)
    image = _background(spec, yy, xx, rng)
    mask = np.zeros((size, size), dtype=np.uint8)
    parts = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(spec.min_objects, spec.max_objects + 1)):
        cls = int(rng.integers(spec.num_classes))
        look = looks[cls]
        radius = rng.uniform(spec.min_object_size, spec.max_object_size) * size / 2
        for _attempt in range(20):  # limit overlap with the objects already placed
            cy, cx = rng.uniform(0.6 * radius, size - 0.6 * radius, size=2)
            body, axis = _oriented_blob(yy, xx, cy, cx, radius, rng, spec.body_thinness)
            if (body & (mask > 0)).sum() <= 0.3 * body.sum():
                break
        colour = spec.body_saliency * look.body_colour + (1 - spec.body_saliency) * _hsv(
            rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.9)
        )
        angle = look.stripe_angle + rng.normal(0, np.pi / (4 * spec.num_classes))
        texture = (
            0.3
            * spec.body_saliency
            * _stripes(yy, xx, angle, look.stripe_period, rng.uniform(0, 2 * np.pi))
        )
        image[body] = colour + texture[body][:, None]
        part_radius = spec.part_size * radius
        distance = spec.part_offset * radius + rng.uniform(0, 0.35 * radius)
        direction = rng.uniform(0, 2 * np.pi)
        if spec.part_offset > 0:  # towards one end of the long axis, like a head
            direction = axis + np.pi * (direction > np.pi)
        offset = distance * np.exp(1j * direction)
        if spec.part_style == "constellation":  # centred where a shape would be
            pattern = list(CONSTELLATIONS.values())[cls % len(CONSTELLATIONS)]
            centre = (cy + offset.imag, cx + offset.real)
            down = (1.0, 0.0)  # the pattern's +dy in image (y, x)
            if spec.part_frame == "body" and abs(offset) > 0:
                down = (offset.imag / abs(offset), offset.real / abs(offset))
            half_span = spec.part_span * radius
            part = _constellation(yy, xx, *centre, pattern, half_span, part_radius, down)
            part_colour = DOT_COLOUR
        else:
            part = look.part_shape(yy - cy - offset.imag, xx - cx - offset.real, part_radius)
            part_colour = look.part_colour
        image[part] = (1 - spec.part_saliency) * colour + spec.part_saliency * part_colour
        mask[body | part] = cls + 1
        parts = (parts & ~body) | part
    image += rng.normal(0, spec.noise, size=image.shape) if spec.noise > 0 else 0
    mask[_boundary_band(mask, spec.boundary_ignore)] = IGNORE_INDEX
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), mask, parts


SPLITS = ("train", "val")
# Every TUNE_EVERY-th train image goes to the list ``tune`` (thresholds are chosen there), the
# others to ``report`` (CAMs and pseudo-masks are scored there): both lie inside ``train``, as
# VOC's tuning and reported images both lie inside train_aug.
TUNE_EVERY = 5


def generate(
    spec: SyntheticSpec, seed: int
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (split, image id, image, mask, part map) for every image of every split."""
    counts = {"train": spec.train_images, "val": spec.val_images}
    for split_index, split in enumerate(SPLITS):
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, split_index, i])
            image, mask, parts = render_image(spec, rng)
            yield split, f"syn_{split}_{i:05d}", image, mask, parts


def write_dataset(layout: VOCLayout, spec: SyntheticSpec, seed: int) -> dict[str, int]:
    """Render the dataset into ``layout`` (VOC layout): the lists train, val, and train's two
    parts tune and report. Return the number of images per list."""
    (layout.root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (layout.root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    labels: dict[str, list[int]] = {}
    for split, image_id, image, mask, _ in generate(spec, seed):
        Image.fromarray(image).save(layout.image_path(image_id), quality=95)
        save_mask(layout.mask_path(image_id), mask)
        splits[split].append(image_id)
        labels[image_id] = labels_from_mask(mask)
    splits["tune"] = splits["train"][::TUNE_EVERY]
    tune = set(splits["tune"])
    splits["report"] = [i for i in splits["train"] if i not in tune]
    for split, ids in splits.items():
        layout.write_split(split, ids)
    layout.write_metadata(spec.class_names(), labels)
    return {split: len(ids) for split, ids in splits.items()}
