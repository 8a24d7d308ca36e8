"""PASCAL VOC 2012 with the SBD masks: the archives, the train_aug list, and the dataset build.

The standard WSSS setting (method.md): networks train on train_aug = (SBD train + SBD val + VOC
train) minus VOC val, 10,582 images; CAMs and pseudo-masks are scored on VOC train (1,464), the
segmenter on VOC val (1,449). Image-level labels come from the VOC XML annotations. Masks come from
VOC's SegmentationClass where it has one, else from SBD's ``cls/*.mat`` (converted to palette
PNGs); they only ever score results or train the fully supervised upper bound.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.io
import scipy.io.matlab
from torchvision.datasets import SBDataset
from torchvision.datasets.voc import DATASET_YEAR_DICT

from destseg.dataset.ids import IdError, read_id_list
from destseg.dataset.layout import VOCLayout, save_mask
from destseg.dataset.sources.download import Archive, extract, fetch, under
from destseg.dataset.sources.folder import DatasetError, import_folder

CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip
TRAIN_AUG_SIZE = 10_582

_VOC = DATASET_YEAR_DICT["2012"]
VOC_ARCHIVE = Archive(_VOC["url"], _VOC["filename"], _VOC["md5"])
SBD_ARCHIVE = Archive(SBDataset.url, SBDataset.filename, SBDataset.md5)
VOC_DIR = _VOC["base_dir"]  # VOCdevkit/VOC2012
SBD_DIR = "benchmark_RELEASE/dataset"


def train_aug_ids(
    sbd_train: Iterable[str], sbd_val: Iterable[str], voc_train: Iterable[str],
    voc_val: Iterable[str],
) -> list[str]:  # fmt: skip
    """(SBD train + SBD val + VOC train) minus VOC val, sorted."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def sbd_mask(path: Path) -> np.ndarray:
    """The class map of an SBD ``cls/<id>.mat`` file (struct GTcls, field Segmentation)."""
    try:
        segmentation = scipy.io.loadmat(path)["GTcls"]["Segmentation"][0][0]
    except (OSError, ValueError, KeyError, IndexError, scipy.io.matlab.MatReadError) as err:
        raise DatasetError(f"{path}: not an SBD class file ({err})") from None
    return np.asarray(segmentation, dtype=np.uint8)


def _read_list(path: Path) -> list[str]:
    """The checked ids of a list in an archive (they name the files read and written)."""
    if not path.is_file():
        raise DatasetError(f"{path}: list not found in the archive")
    try:
        return read_id_list(path)
    except IdError as err:
        raise DatasetError(str(err)) from None


# Every TUNE_EVERY-th image of train_aug outside VOC train: 507 of the official 9,118.
TUNE_EVERY = 18


def tune_list(train_aug: list[str], voc_train: list[str]) -> list[str]:
    """The list ``tune``: thresholds are chosen on it. Part of train_aug, so the classifier
    trained on it as on the reported images, and outside VOC train (1,464 images, where CAM and
    pseudo-mask mIoU are reported), so choosing does not peek at the reported images. About 500
    images keep the CRF sweep of refine affordable (19 thresholds each)."""
    reported = set(voc_train)
    return sorted(i for i in train_aug if i not in reported)[::TUNE_EVERY]


def stage(voc_root: Path, sbd_root: Path) -> dict[str, list[str]]:
    """Turn the extracted archives into one VOC-layout folder at ``voc_root``, in place.

    Writes the lists train_aug, train, val and tune, and a mask for every train_aug image
    without one (from SBD); returns the lists.
    """
    segmentation = voc_root / "ImageSets" / "Segmentation"
    voc_train = _read_list(segmentation / "train.txt")
    voc_val = _read_list(segmentation / "val.txt")
    aug = train_aug_ids(
        _read_list(sbd_root / "train.txt"), _read_list(sbd_root / "val.txt"), voc_train, voc_val
    )
    layout = VOCLayout(voc_root)
    for image_id in aug:
        if not layout.mask_path(image_id).is_file():
            save_mask(layout.mask_path(image_id), sbd_mask(sbd_root / "cls" / f"{image_id}.mat"))
    tune = tune_list(aug, voc_train)
    lists = {"train_aug": aug, "train": voc_train, "val": voc_val, "tune": tune}
    for old in segmentation.glob("*.txt"):  # trainval.txt: not a list the pipeline uses
        old.unlink()
    for name, ids in lists.items():
        layout.write_split(name, ids)
    return lists


def build(
    voc: Archive, sbd: Archive, download_dir: Path, out: VOCLayout, expected_train_aug: int | None
) -> dict[str, int]:
    """Fetch (or reuse) both archives, extract what the pipeline reads, write ``out``.

    ``expected_train_aug`` is checked when given: 10,582 for the official archives.
    """
    voc_tar, sbd_tar = fetch(voc, download_dir), fetch(sbd, download_dir)
    scratch = download_dir / ".extracted"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        parts = ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation")
        extract(voc_tar, scratch, under(*(f"{VOC_DIR}/{part}" for part in parts)))
        sbd_parts = ("cls", "train.txt", "val.txt")
        extract(sbd_tar, scratch, under(*(f"{SBD_DIR}/{part}" for part in sbd_parts)))
        lists = stage(scratch / VOC_DIR, scratch / SBD_DIR)
        if expected_train_aug is not None and len(lists["train_aug"]) != expected_train_aug:
            raise DatasetError(
                f"{sbd_tar}: train_aug has {len(lists['train_aug'])} images, expected "
                f"{expected_train_aug}; the archives are not the official ones"
            )
        return import_folder(scratch / VOC_DIR, CLASSES, out, move=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
