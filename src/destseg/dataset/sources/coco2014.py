"""MS COCO 2014: the archives, semantic masks from the instance annotations, and the dataset build.

The WSSS setting on COCO (ReCAM, AMN, ToCo, ...): networks train on train2014, pseudo-masks are
scored on train2014 and the segmenter on val2014, over the 80 object categories plus background.
Image-level labels come from the instance annotations; masks are drawn from them with pycocotools
and only ever score results or train the fully supervised upper bound.

The masks follow ``alicranck/coco2voc`` (the converter ToCo's README points to, and the source of
its 82,081 / 40,137-image lists):

- only images with at least one annotation are kept (82,081 of train2014's 82,783 and 40,137 of
  val2014's 40,504; torchvision's COCO code counts the same);
- every annotation is drawn, crowd regions included (a crowd of people is people);
- instances are drawn smallest ``area`` first and a pixel keeps the first class drawn on it, so
  a small object on a large one stays visible (ties: in the annotation file's order);
- category ids (1..90 with gaps) become class indices 1..80 in id order, background 0; no pixel
  is 255 (coco2voc's optional border band is off by default, and ReCAM's masks have none).

ReCAM's own script (``mscoco/annToMask.py``) differs in two ways, said here so results can be
compared: it leaves crowd regions background and lets later annotations overwrite earlier ones,
and it keeps images without annotations (all-background masks, no label).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from destseg.dataset.ids import IdError, check_id
from destseg.dataset.layout import ImageFileError, VOCLayout, image_size, save_mask
from destseg.dataset.sources.download import Archive, extract, fetch, under
from destseg.dataset.sources.folder import DatasetError, import_folder
from destseg.runtime.workers import parallel_map

# The official archives and their MD5 sums, as salesforce/LAVIS
# (lavis/datasets/download_scripts/download_coco.py) and pytorchcocotools' CocoFiles list them;
# sizes 13,510,573,713, 6,645,013,297 and 252,872,794 bytes (tensorflow/datasets'
# url_checksums/coco.txt, which gives their SHA-256).
TRAIN_ARCHIVE = Archive(
    "http://images.cocodataset.org/zips/train2014.zip",
    "train2014.zip",
    "0da8c0bd3d6becc4dcb32757491aca88",
)
VAL_ARCHIVE = Archive(
    "http://images.cocodataset.org/zips/val2014.zip",
    "val2014.zip",
    "a3d79f5ed8d289b7a7554ce06a5782b3",
)
ANNOTATIONS_ARCHIVE = Archive(
    "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
    "annotations_trainval2014.zip",
    "0a379cfc70b0e71301e0f377548639bd",
)
# list name -> the folder of its images in its archive (and of its annotation file's name)
FOLDERS = {"train": "train2014", "val": "val2014"}
# Images with at least one annotation in the official files (torchvision's prototype COCO
# dataset: ``instances=82_081`` and ``40_137``; ToCo's datasets/coco/train.txt and val.txt).
EXPECTED_IMAGES = {"train": 82_081, "val": 40_137}
NUM_CATEGORIES = 80
# Every TUNE_EVERY-th image of train: 1,001 images on which the `auto` thresholds are chosen,
# left out of the reported list (a threshold chosen on the reported images is an oracle). About
# twice VOC's 507, for 80 classes instead of 20.
TUNE_EVERY = 82


@dataclass(frozen=True)
class Instance:
    """One annotation: its class index (1..K), its ``area`` (the drawing order) and its
    segmentation as the file gives it (polygons, or RLE for crowd regions)."""

    annotation: int
    label: int
    area: float
    segmentation: list | dict


@dataclass(frozen=True)
class ImageRecord:
    """One image of an annotation file with its instances, in the file's order."""

    image_id: str  # the file name without .jpg: COCO_train2014_000000000009
    file_name: str
    width: int
    height: int
    instances: tuple[Instance, ...]

    @property
    def labels(self) -> list[int]:
        """Image-level labels: the classes of its annotations, crowd regions included."""
        return sorted({instance.label for instance in self.instances})


def _fail(path: Path | str, what: str) -> DatasetError:
    return DatasetError(f"{path}: {what}")


def _entries(data: dict, key: str, path: Path) -> list[dict]:
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _fail(path, f"not a COCO instances file: no list of {key!r} records")
    return entries


def _number(record: dict, key: str, what: str, path: Path, integer: bool = False) -> float:
    value = record.get(key)
    kinds = int if integer else (int, float)
    if (
        not isinstance(value, kinds)
        or isinstance(value, bool)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        kind = "a whole number" if integer else "a number"
        raise _fail(path, f"{what}: {key!r} is {value!r}, not {kind}")
    return value


def _categories(data: dict, path: Path) -> tuple[list[str], dict[int, int]]:
    """Class names in category-id order and the map category id -> class index (1..K)."""
    categories = _entries(data, "categories", path)
    named = {}
    for record in categories:
        category = int(_number(record, "id", "a category", path, integer=True))
        name = record.get("name")
        if not isinstance(name, str) or not name.strip() or category in named:
            raise _fail(path, f"category {category}: a missing, empty or repeated record")
        named[category] = name.strip()
    if not 1 <= len(named) <= 254:
        # class indices are uint8 and 255 means "ignore" in the masks
        raise _fail(path, f"{len(named)} categories; 1 to 254 can be classes")
    order = sorted(named)
    return [named[c] for c in order], {c: i + 1 for i, c in enumerate(order)}


def rle_counts(counts: str) -> list[int]:
    """The run lengths of a compressed RLE string, decoded as pycocotools' ``rleFrString``
    does (5 bits per character from 48 on, a continuation bit, a sign bit, each run after the
    second stored as the difference to the run two before), so that they can be checked before
    pycocotools decodes them without looking: a wrong total there draws whatever memory holds."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("the string ends inside a run")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(f"character {counts[position]!r} is not an RLE digit")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position, shift = position + 1, shift + 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _check_segmentation(segmentation, width: int, height: int, what: str, path: Path):
    """The segmentation as pycocotools can draw it, or a DatasetError naming the record.

    An RLE must be of the image's size, its runs whole numbers >= 0 that cover the image
    exactly (pycocotools trusts the total: a short one leaves pixels of uninitialised memory).
    Polygons must be lists of x, y pairs inside a wide margin around the image and meet it (a
    point or two just past the border is clipped, as pycocotools does; a polygon wholly outside
    belongs to another image). A polygon of one or two points encloses nothing and is dropped:
    as the first of a list, pycocotools would take its four values for a box."""
    if isinstance(segmentation, dict):
        counts = segmentation.get("counts")
        if segmentation.get("size") != [height, width]:
            raise _fail(
                path,
                f"{what}: an RLE of size {segmentation.get('size')!r} for an image of "
                f"{height}x{width} (height x width)",
            )
        try:
            runs = rle_counts(counts) if isinstance(counts, str) else counts
        except ValueError as err:
            raise _fail(path, f"{what}: not a compressed RLE ({err})") from None
        if (
            not isinstance(runs, list)
            or not all(type(r) is int and r >= 0 for r in runs)
            or sum(runs) != height * width
        ):
            raise _fail(
                path,
                f"{what}: RLE counts must be whole numbers >= 0 adding up to the image's "
                f"{height * width} pixels",
            )
        return segmentation
    if not isinstance(segmentation, list) or not segmentation:
        raise _fail(path, f"{what}: segmentation is neither polygons nor RLE")
    kept = []
    for polygon in segmentation:
        if (
            not isinstance(polygon, list)
            or len(polygon) % 2
            or not all(type(v) in (int, float) for v in polygon)
        ):
            raise _fail(path, f"{what}: a polygon must be a list of x, y pairs of numbers")
        if len(polygon) < 6:
            continue
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        low, high = points.min(0), points.max(0)
        if (
            not np.isfinite(points).all()
            or (low < (-width, -height)).any()
            or (high > (2 * width, 2 * height)).any()
            or high[0] <= 0
            or low[0] >= width
            or high[1] <= 0
            or low[1] >= height
        ):
            raise _fail(
                path,
                f"{what}: a polygon outside its image (x {low[0]:g}..{high[0]:g}, y "
                f"{low[1]:g}..{high[1]:g} for an image of {width}x{height})",
            )
        kept.append(polygon)
    return kept


def read_instances(path: Path) -> tuple[list[str], list[ImageRecord]]:
    """The class names (background first) and the images with at least one annotation of a
    COCO instances file, sorted by id; every record checked, a bad one named with the file."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _fail(path, "annotation file not found in the archive") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise _fail(path, "not a COCO instances file (expected an object at the top)")
    names, index = _categories(data, path)
    images = {}
    for record in _entries(data, "images", path):
        number = int(_number(record, "id", "an image", path, integer=True))
        file_name = record.get("file_name")
        what = f"image {number}"
        if not isinstance(file_name, str) or not file_name.endswith(".jpg"):
            raise _fail(path, f"{what}: file_name {file_name!r} is not <id>.jpg")
        try:
            image_id = check_id(file_name.removesuffix(".jpg"), f"{path}: {what}: file_name")
        except IdError as err:
            raise DatasetError(str(err)) from None
        width = int(_number(record, "width", what, path, integer=True))
        height = int(_number(record, "height", what, path, integer=True))
        if number in images or width < 1 or height < 1:
            raise _fail(path, f"{what}: a repeated record or an empty size")
        images[number] = (image_id, file_name, width, height, [])
    for record in _entries(data, "annotations", path):
        annotation = int(_number(record, "id", "an annotation", path, integer=True))
        what = f"annotation {annotation}"
        image = images.get(_number(record, "image_id", what, path, integer=True))
        if image is None:
            raise _fail(path, f"{what}: image_id {record.get('image_id')!r} is not in 'images'")
        label = index.get(_number(record, "category_id", what, path, integer=True))
        if label is None:
            raise _fail(
                path, f"{what}: category_id {record.get('category_id')!r} is not in 'categories'"
            )
        area = _number(record, "area", what, path)
        segmentation = _check_segmentation(
            record.get("segmentation"), image[2], image[3], what, path
        )
        image[4].append(Instance(annotation, label, area, segmentation))
    records = [
        ImageRecord(image_id, file_name, width, height, tuple(instances))
        for image_id, file_name, width, height, instances in images.values()
        if instances
    ]
    records.sort(key=lambda r: r.image_id)
    if len({r.image_id for r in records}) != len(records):
        raise _fail(path, "two images share a file name")
    return ["background", *names], records


def instance_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of one annotation, as pycocotools' ``COCO.annToMask`` draws it:
    polygons merged into one RLE, an uncompressed RLE (crowd) compressed, then decoded."""
    if isinstance(segmentation, list):
        if not segmentation:  # only polygons of one or two points: nothing enclosed
            return np.zeros((height, width), dtype=bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    with warnings.catch_warnings():  # pycocotools 2.0's decode warns under numpy 2, every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


def semantic_mask(record: ImageRecord) -> np.ndarray:
    """The class map of one image: instances drawn smallest area first, a pixel keeping the
    first class drawn on it (module docstring), background 0."""
    mask = np.zeros((record.height, record.width), dtype=np.uint8)
    for instance in sorted(record.instances, key=lambda i: i.area):  # stable: file order on ties
        drawn = instance_mask(instance.segmentation, record.height, record.width)
        mask[drawn & (mask == 0)] = instance.label
    return mask


def write_mask(record: ImageRecord, root: Path) -> None:
    """Draw ``record``'s mask into ``root`` (a VOC layout), after checking that the image file
    has the size its record states (the mask is drawn at that size)."""
    layout = VOCLayout(root)
    path = layout.image_path(record.image_id)
    try:
        size = image_size(path)
    except ImageFileError as err:
        raise DatasetError(str(err)) from None
    if size != (record.width, record.height):
        raise DatasetError(
            f"{path}: {size[0]}x{size[1]}, but its annotation record says "
            f"{record.width}x{record.height}"
        )
    try:
        mask = semantic_mask(record)
    except (ValueError, TypeError, OverflowError, MemoryError) as err:
        # the records were checked; whatever pycocotools still refuses is named here
        raise DatasetError(f"{path}: its annotations cannot be drawn ({err})") from None
    save_mask(layout.mask_path(record.image_id), mask)


def tune_list(train: Sequence[str]) -> list[str]:
    """Every TUNE_EVERY-th image of train (sorted): the `auto` thresholds are chosen on it."""
    return sorted(train)[::TUNE_EVERY]


def build(
    archives: dict[str, Archive],
    download_dir: Path,
    out: VOCLayout,
    official: bool,
    workers: int | None = None,
) -> dict[str, int]:
    """Fetch (or reuse) the three archives (``archives``: train, val, annotations), extract the
    annotation files and the images with annotations, draw the masks in ``workers`` processes
    (default one per CPU), write the lists train, val, tune and report (train minus tune) and
    the dataset into ``out``. ``official``: the archives are the official ones, so the image
    and category counts are checked against theirs."""
    paths = {name: fetch(archive, download_dir) for name, archive in archives.items()}
    # a folder of its own: two builds sharing the download folder must not remove each other's
    scratch = Path(tempfile.mkdtemp(prefix=".extracted-", dir=download_dir))
    try:
        files = {split: f"annotations/instances_{folder}.json" for split, folder in FOLDERS.items()}
        extract(paths["annotations"], scratch, under(*files.values()))
        layout = VOCLayout(scratch / "dataset")
        (layout.root / "JPEGImages").mkdir(parents=True)
        (layout.root / "SegmentationClass").mkdir()
        classes, lists, records = None, {}, []
        # errors name the archive's member, not the scratch file that is gone once they show
        named = {split: f"{paths['annotations']} (member {files[split]})" for split in files}
        for split, folder in FOLDERS.items():
            try:
                names, found = read_instances(scratch / files[split])
            except DatasetError as err:
                raise DatasetError(
                    str(err).replace(str(scratch / files[split]), named[split])
                ) from None
            if classes is not None and names != classes:
                raise _fail(named[split], f"categories differ from {files['train']}'s")
            classes = names
            if official and (len(found), len(names) - 1) != (
                EXPECTED_IMAGES[split],
                NUM_CATEGORIES,
            ):
                raise _fail(
                    paths["annotations"],
                    f"{folder}: {len(found)} images with annotations and {len(names) - 1} "
                    f"categories, expected {EXPECTED_IMAGES[split]} and {NUM_CATEGORIES}",
                )
            shared = set(lists.get("train", ())) & {r.image_id for r in found}
            if shared:
                raise _fail(
                    named[split],
                    f"{len(shared)} images also in {files['train']}, e.g. {min(shared)}",
                )
            wanted = {f"{folder}/{r.file_name}" for r in found}
            extracted = set(extract(paths[split], scratch, wanted.__contains__))
            for record in found:
                member = f"{folder}/{record.file_name}"
                if member not in extracted:
                    raise _fail(paths[split], f"{member} is missing (named by {files[split]})")
                os.replace(scratch / member, layout.image_path(record.image_id))
            lists[split] = [r.image_id for r in found]
            records += found
        job = partial(write_mask, root=layout.root)
        # write_mask returns nothing: consuming the results draws every mask, and in order, so
        # the first bad image in id order is the one named
        list(parallel_map(job, records, workers or os.cpu_count() or 1, "COCO masks", True))
        tune = tune_list(lists["train"])
        lists |= {"tune": tune, "report": sorted(set(lists["train"]) - set(tune))}
        for name, ids in lists.items():
            layout.write_split(name, ids)
        labels = {r.image_id: r.labels for r in records}
        del records, found  # the polygons: gigabytes on COCO, no longer needed
        return import_folder(layout.root, classes, out, move=True, labels=labels)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
