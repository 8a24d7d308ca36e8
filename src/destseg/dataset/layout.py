"""The PASCAL VOC folder layout that every dataset source produces and every stage reads.

    <root>/JPEGImages/<id>.jpg            RGB images
    <root>/SegmentationClass/<id>.png     palette PNGs: class index per pixel, 255 = ignore
    <root>/ImageSets/Segmentation/<split>.txt   one image id per line
    <root>/classes.json                   class names, background first
    <root>/labels.json                    image-level labels: {id: [class name, ...]}

Class index 0 is the background; image-level labels never contain it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from destseg.dataset.ids import check_id, read_id_list

IGNORE_INDEX = 255
# A mask stores a class per byte and 255 means ignore: the background 0 and at most 254 object
# classes (VOC has 20, COCO 80).
MAX_OBJECT_CLASSES = IGNORE_INDEX - 1
# What PIL raises for a damaged file, depending on the format and the damage.
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open`` with PIL's decompression-bomb warning (over about 89 megapixels) raised
    as an error: as a warning it names no file, and the image would then be decoded whole."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            yield image


class ImageFileError(ValueError):
    """An image or mask file that cannot be decoded; the message names it."""


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved RGB for 256 indices), flattened for PIL."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return palette


_PALETTE = voc_palette()


def save_mask(path: str | Path, mask: np.ndarray) -> None:
    """Save a label map (H, W) of uint8 class indices as a VOC palette PNG."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(_PALETTE)
    image.save(path, optimize=False)


def load_mask(path: str | Path) -> np.ndarray:
    """Load a label map: the palette indices of a 'P' PNG (or the values of an 'L' PNG)."""
    try:
        with open_image(path) as image:
            mode = image.mode
            if mode in ("P", "L"):
                return np.array(image, dtype=np.uint8)
    except DECODE_ERRORS as err:
        raise ImageFileError(f"{path}: not a readable mask ({_describe(err)})") from None
    raise ImageFileError(f"{path}: a mask must be a palette or greyscale PNG, got mode {mode}")


def load_image(path: str | Path) -> np.ndarray:
    """Load an image as an (H, W, 3) uint8 RGB array, decoded completely."""
    try:
        with open_image(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except DECODE_ERRORS as err:
        raise ImageFileError(f"{path}: not a readable image ({_describe(err)})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, from its header only."""
    try:
        with open_image(path) as image:
            return image.size
    except DECODE_ERRORS as err:
        raise ImageFileError(f"{path}: not a readable image ({_describe(err)})") from None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); run the prepare stage again") from None


def _describe(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    return str(err) or type(err).__name__


class Labels(dict):
    """Image-level labels by image id; an id without labels is an error naming labels.json (a
    list edited after prepare), not a bare KeyError from deep inside a stage."""

    def __init__(self, labels: dict[str, list[int]], path: Path):
        super().__init__(labels)
        self.path = path

    def __missing__(self, image_id: str):
        raise ValueError(
            f"{self.path}: no labels for image {image_id!r}, which a list names (was a list "
            "edited after prepare? run the prepare stage again)"
        )


@dataclass(frozen=True)
class VOCLayout:
    """Paths and metadata of one dataset in VOC layout."""

    root: Path

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{check_id(image_id)}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{check_id(image_id)}.png"

    def ground_truth(self, image_id: str, shape: tuple[int, ...]) -> np.ndarray:
        """The mask of ``image_id``, refused (naming it) unless it is ``shape`` (height, width),
        the size of what is scored against it: an image or mask replaced after prepare."""
        path = self.mask_path(image_id)
        mask = load_mask(path)
        if mask.shape != tuple(shape):
            raise ImageFileError(
                f"{path}: a mask of {mask.shape[0]}x{mask.shape[1]} for an image of "
                f"{shape[0]}x{shape[1]} (height x width): was the image or the mask replaced "
                "after prepare? run prepare again"
            )
        return mask

    def split_path(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{check_id(split, 'list name')}.txt"

    def split_names(self) -> list[str]:
        """The names of the image lists the dataset has."""
        return sorted(path.stem for path in self.split_path("x").parent.glob("*.txt"))

    def ids(self, split: str) -> list[str]:
        """The ids of list ``split``, checked (see :func:`destseg.dataset.ids.read_id_list`)."""
        path = self.split_path(split)
        if not path.is_file():
            names = self.split_names()
            hint = f"the dataset has {', '.join(names)}" if names else "run the prepare stage first"
            raise FileNotFoundError(f"{path}: image list {split!r} not found ({hint})")
        ids = read_id_list(path)
        if not ids:
            raise ValueError(f"{path}: the split list is empty")
        return ids

    @cached_property
    def classes(self) -> list[str]:
        """Class names, background first."""
        path = self.root / "classes.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: class list not found (run the prepare stage first)")
        classes = _read_json(path)
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{path}: expected a list of class names")
        return classes

    @cached_property
    def labels(self) -> Labels:
        """Image-level labels as sorted class indices (1..K, never the background)."""
        path = self.root / "labels.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image-level labels not found (run prepare first)")
        index = {name: i for i, name in enumerate(self.classes)}
        raw = _read_json(path)
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise ValueError(f"{path}: expected a mapping of image ids to lists of class names")
        try:
            labels = {k: sorted(index[name] for name in names) for k, names in raw.items()}
        except KeyError as err:
            raise ValueError(f"{path}: unknown class name {err.args[0]!r}") from None
        return Labels(labels, path)

    def smallest_side(self, ids: Iterable[str]) -> int:
        """The shorter side of the smallest image of ``ids``, from the image headers only."""
        return min(min(image_size(self.image_path(image_id))) for image_id in ids)

    def write_metadata(self, classes: list[str], labels: dict[str, list[int]]) -> None:
        """Write classes.json and labels.json (labels given as class indices)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
        named = {k: [classes[i] for i in sorted(v)] for k, v in labels.items()}
        (self.root / "labels.json").write_text(json.dumps(named, indent=1) + "\n")

    def write_split(self, split: str, ids: list[str]) -> None:
        path = self.split_path(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i}\n" for i in ids))


def labels_from_mask(mask: np.ndarray) -> list[int]:
    """Image-level labels of a label map: the foreground classes it contains."""
    values = np.unique(mask)
    return [int(v) for v in values if v != 0 and v != IGNORE_INDEX]
