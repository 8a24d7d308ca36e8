"""A dataset the user brings: any folder in VOC layout, checked up front, then copied in.

    <root>/JPEGImages/<id>.jpg                 RGB (or greyscale) images
    <root>/ImageSets/Segmentation/<list>.txt   one id per line; every list is copied
    <root>/SegmentationClass/<id>.png          optional per image: palette or greyscale masks
    <root>/Annotations/<id>.xml                optional per image: VOC XML objects
    a tags file anywhere (CSV or JSON)         optional: image-level tags of any images

Image-level labels come from the tags file where it names the image, else from the XML
annotation, else from the mask, as the VOC tools do; an image with none of them cannot be
used. Every problem is found before anything is written and named with its file, so a broken
dataset fails in seconds, not in the middle of training: ids are checked as file names (no
``../``), and every image and mask is decoded completely (a truncated JPEG opens fine and
fails only when its pixels are read), in worker processes because that is most of the time
on VOC.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import warnings
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import numpy as np

from destseg.dataset.ids import IdError, check_id, read_id_list
from destseg.dataset.layout import (
    DECODE_ERRORS,
    IGNORE_INDEX,
    ImageFileError,
    VOCLayout,
    labels_from_mask,
    load_mask,
    open_image,
)
from destseg.runtime.workers import parallel_map

IMAGE_MODES = ("RGB", "L")
# A tags file is read whole: 64 MB holds COCO's 123k images with their tags ten times over.
MAX_TAGS_BYTES = 64 * 2**20


class DatasetError(ValueError):
    """The folder is not a usable VOC-layout dataset; the message names the file."""


def inside(root: Path, path: Path) -> Path:
    """``path`` if it (after following every link) lies inside ``root``, else a DatasetError:
    a link in the user's folder must not copy a file from elsewhere into the dataset (and DVC's
    cache), nor make an error message show another file's content."""
    if (path.exists() or path.is_symlink()) and not path.resolve().is_relative_to(root.resolve()):
        raise DatasetError(f"{path}: a link to a file outside {root}; copy the file in instead")
    return path


def labels_from_xml(path: Path, classes: list[str]) -> list[int]:
    """The class indices of the objects in a VOC XML annotation (difficult ones included)."""
    try:
        names = [obj.findtext("name", "").strip() for obj in ET.parse(path).iter("object")]
    except ET.ParseError as err:
        raise DatasetError(f"{path}: not valid XML ({err})") from None
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise DatasetError(f"{path}: unknown class names {unknown}; known: {classes[1:]}")
    return sorted({index[n] for n in names if index[n] != 0})


def read_tags(path: Path, classes: list[str]) -> dict[str, list[int]]:
    """The image-level labels of a tags file, by image id: a CSV with the columns ``image`` and
    ``tags`` (class names separated by spaces; empty: no object), or a JSON object mapping ids
    to lists of class names (for names with spaces). ``image`` is an id or its ``.jpg`` file
    name. Every id and name is checked, and a repeated id refused, naming the file and line."""
    if not path.is_file():
        raise DatasetError(f"{path}: tags file not found (data.folder.tags)")
    if path.stat().st_size > MAX_TAGS_BYTES:
        raise DatasetError(f"{path}: a tags file of more than {MAX_TAGS_BYTES // 2**20} MB")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as err:
        raise DatasetError(f"{path}: not a readable text file ({err})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _json_tags(path, text)
    elif suffix == ".jsonl":
        rows = _jsonl_tags(path, text)
    elif suffix == ".csv":
        rows = _csv_tags(path, text)
    else:
        raise DatasetError(
            f"{path}: a tags file is .csv (image,tags), .json ({{id: [names]}}) or .jsonl "
            '(one {"image": id, "tags": [names]} per line)'
        )
    index = {name: i for i, name in enumerate(classes)}
    tags: dict[str, list[int]] = {}
    for where, image, names in rows:
        image_id = image[:-4] if image.lower().endswith(".jpg") else image
        try:
            check_id(image_id, f"{where}: image id")
        except IdError as err:
            raise DatasetError(str(err)) from None
        if image_id in tags:
            raise DatasetError(f"{where}: image {image_id!r} is tagged a second time")
        unknown = sorted({n for n in names if n not in index})
        if unknown:
            raise DatasetError(f"{where}: unknown class names {unknown}; known: {classes[1:]}")
        tags[image_id] = sorted({index[n] for n in names if index[n] != 0})
    return tags


def _csv_tags(path: Path, text: str) -> list[tuple[str, str, list[str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or not {"image", "tags"} <= set(reader.fieldnames):
        raise DatasetError(f"{path}: expected a header line with the columns image,tags")
    return [
        (f"{path}, line {reader.line_num}", row["image"] or "", (row["tags"] or "").split())
        for row in reader
    ]


def _unique_keys(path: Path, pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refused if it names a key twice (``json`` would keep the last)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise DatasetError(f"{path}, image {key!r}: tagged a second time")
        seen.add(key)
    return dict(pairs)


def _json_tags(path: Path, text: str) -> list[tuple[str, str, list[str]]]:
    try:
        data = json.loads(text, object_pairs_hook=partial(_unique_keys, path))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in data.values()
    ):
        raise DatasetError(f"{path}: expected an object of image ids to lists of class names")
    return [(f"{path}, image {image!r}", image, names) for image, names in data.items()]


def read_lists(root: Path) -> dict[str, list[str]]:
    """Every ``ImageSets/Segmentation/*.txt`` of ``root``, by list name."""
    folder = root / "ImageSets" / "Segmentation"
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"{folder}: no image lists (<name>.txt, one image id per line)")
    lists = {}
    for file in files:
        inside(root, file)
        try:
            ids = read_id_list(file)
        except IdError as err:
            raise DatasetError(str(err)) from None
        if not ids:
            raise DatasetError(f"{file}: the list is empty")
        lists[file.stem] = ids
    return lists


# what a user's images may be instead of JPEG: named when <id>.jpg is missing
OTHER_IMAGE_SUFFIXES = (".jpeg", ".JPG", ".JPEG", ".png", ".PNG", ".webp", ".bmp", ".tif", ".tiff")


def check_image(path: Path) -> tuple[int, int]:
    """The (width, height) of an RGB or greyscale image whose every pixel decodes."""
    if not path.is_file():
        others = [path.with_suffix(s) for s in OTHER_IMAGE_SUFFIXES]
        found = next((other for other in others if other.is_file()), None)
        if found is not None:
            raise DatasetError(
                f"{found}: the folder source reads JPEG images named <id>.jpg (the dataset it "
                f"writes is VOC's layout); convert it to {path.name}, e.g. with Pillow: "
                "Image.open(src).convert('RGB').save(dst, quality=95)"
            )
        raise DatasetError(f"{path}: image not found")
    try:
        with open_image(path) as image:
            mode, size = image.mode, image.size
            image.load()
    except DECODE_ERRORS as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from None
    if mode not in IMAGE_MODES:
        raise DatasetError(f"{path}: image mode {mode}; expected one of {', '.join(IMAGE_MODES)}")
    return size


def check_mask(path: Path, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """A mask of the image's size whose values are class indices or 255 (ignore)."""
    try:
        mask = load_mask(path)
    except ImageFileError as err:  # already names the file
        raise DatasetError(str(err)) from None
    if mask.shape != (size[1], size[0]):
        raise DatasetError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image {size[0]}x{size[1]}"
        )
    values = np.unique(mask)
    unknown = [int(v) for v in values if v >= num_classes and v != IGNORE_INDEX]
    if unknown:
        raise DatasetError(
            f"{path}: label values {unknown} are not class indices 0..{num_classes - 1} or 255"
        )
    return mask


def _jsonl_tags(path: Path, text: str) -> list[tuple[str, str, list[str]]]:
    """JSON Lines, as Hugging Face's ``metadata.jsonl``: one object per line with ``image``
    (an id or its .jpg name) and ``tags`` (a list of class names); blank lines are skipped."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{where}: not valid JSON ({err.msg})") from None
        if not (
            isinstance(row, dict)
            and isinstance(row.get("image"), str)
            and isinstance(row.get("tags"), list)
            and all(isinstance(n, str) for n in row["tags"])
        ):
            raise DatasetError(f'{where}: expected {{"image": "<id>", "tags": ["<name>", ...]}}')
        rows.append((where, row["image"], row["tags"]))
    return rows


def image_labels(
    image: tuple[str, list[int] | None], root: Path, classes: list[str]
) -> list[int]:
    """Check one image (and its mask and XML, where present); return its image-level labels:
    its tags where it has any (``image`` is the id and its tags, or None), else its XML's,
    else its mask's."""
    image_id, tags = image
    layout = VOCLayout(root)
    size = check_image(inside(root, layout.image_path(image_id)))
    mask_path, xml_path = layout.mask_path(image_id), root / "Annotations" / f"{image_id}.xml"
    inside(root, mask_path), inside(root, xml_path)
    mask = check_mask(mask_path, size, len(classes)) if mask_path.is_file() else None
    if tags is not None:
        in_mask = labels_from_mask(mask) if mask is not None else tags
        if in_mask != tags:  # one of the two is wrong, and the run would not say which
            raise DatasetError(
                f"{mask_path}: the mask holds {[classes[c] for c in in_mask]} and the tags file "
                f"(data.folder.tags) says {[classes[c] for c in tags]} for {image_id}: correct "
                "one of them"
            )
        return tags
    if xml_path.is_file():
        return labels_from_xml(xml_path, classes)
    if mask is not None:
        return labels_from_mask(mask)
    raise DatasetError(
        f"{mask_path}: no mask, no {xml_path.name} and no tags (data.folder.tags): no labels for it"
    )


def scan(
    root: Path, classes: list[str], workers: int | None = None, tags: Path | None = None
) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """Validate ``root`` (and the ``tags`` file); return its lists and the image-level labels
    of every listed image. Tags of images no list names are checked and left out with a
    warning naming them.

    The images are checked in ``workers`` processes (default: one per CPU); whatever their
    number, the first bad image in id order is the one reported.
    """
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise DatasetError(f"classes: need background and one class or more, unique: {classes}")
    if classes[0] != "background":
        # index 0 of the masks is background and never an image-level label: a list without it
        # would make its first class one, and shift every other class by one
        raise DatasetError(
            f"classes: the first must be background (mask value 0), got {classes[0]!r}; "
            f"write [background, {', '.join(classes)}] if the masks use 0 for background"
        )
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    tagged = {} if tags is None else read_tags(tags, classes)
    lists = read_lists(root)
    ids = sorted({i for ids in lists.values() for i in ids})
    job = partial(image_labels, root=root, classes=classes)
    workers = workers or os.cpu_count() or 1
    images = [(i, tagged.get(i)) for i in ids]
    unused = sorted(set(tagged) - set(ids))
    if unused:  # a misspelt id, or a file name other than <id>.jpg: say so, never drop it mutely
        shown = ", ".join(unused[:3]) + (", ..." if len(unused) > 3 else "")
        warnings.warn(
            f"{tags}: {len(unused)} tagged images are in no list and are left out ({shown})",
            stacklevel=2,
        )
    checked = parallel_map(job, images, workers, "checking images", ordered=True)
    labels = dict(zip(ids, checked, strict=True))
    for name, listed in lists.items():
        if not any(labels[i] for i in listed):
            # typically binary masks, 0 and 255: in VOC masks 255 means "ignore", not an object
            raise DatasetError(
                f"{root / 'ImageSets' / 'Segmentation' / name}.txt: no image of the list has a "
                f"foreground label (classes {classes[1:]}); masks must hold class indices "
                "1..K for objects: a 0/255 mask marks 255 as ignored, so write its objects as 1"
            )
    return lists, labels


def import_folder(
    root: Path,
    classes: list[str],
    out: VOCLayout,
    move: bool = False,
    labels: dict[str, list[int]] | None = None,
    tags: Path | None = None,
) -> dict[str, int]:
    """Validate ``root`` and write it into ``out``; return the size of every list.

    Files are copied, so that nothing done to the user's folder later can change a dataset DVC
    has cached; ``move`` is for a scratch folder built by a download (no second copy of VOC).
    ``labels``: image-level labels a source knows better than its masks tell (COCO's
    annotations, which name an instance even where smaller ones cover all its pixels).
    ``tags``: the user's tags file (:func:`read_tags`).
    """
    place = shutil.move if move else shutil.copyfile
    lists, found = scan(root, classes, tags=tags)
    labels = found if labels is None else {image_id: labels[image_id] for image_id in found}
    source = VOCLayout(root)
    for sub in ("JPEGImages", "SegmentationClass"):
        (out.root / sub).mkdir(parents=True, exist_ok=True)
    for image_id in labels:
        place(source.image_path(image_id), out.image_path(image_id))
        if source.mask_path(image_id).is_file():
            place(source.mask_path(image_id), out.mask_path(image_id))
    for name, ids in lists.items():
        out.write_split(name, ids)
    out.write_metadata(classes, labels)
    return {name: len(ids) for name, ids in lists.items()}
