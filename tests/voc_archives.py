"""VOC 2012 and SBD archives built in memory, laid out as the official ones, for the tests that
run the ``voc2012`` source against a server on 127.0.0.1; and a VOC-shaped set of them (VOC's
image sizes and 21 classes) on which the paper's configuration runs end to end."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass

import numpy as np
import scipy.io
from PIL import Image

from destseg.dataset.layout import labels_from_mask
from destseg.dataset.sources.synthetic import SyntheticSpec, generate
from destseg.dataset.sources.voc2012 import CLASSES

VOC = "VOCdevkit/VOC2012"
SBD = "benchmark_RELEASE/dataset"


def encode(array: np.ndarray, mode: str) -> bytes:
    """A PNG ('P' mode: palette indices) or a JPEG ('RGB')."""
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG" if mode == "P" else "JPEG")
    return buffer.getvalue()


def xml(names: list[str]) -> bytes:
    """A VOC annotation with one object per name (every other one marked difficult)."""
    objects = "".join(
        f"<object><name>{n}</name><difficult>{i % 2}</difficult></object>"
        for i, n in enumerate(names)
    )
    return f"<annotation><filename>x.jpg</filename>{objects}</annotation>".encode()


def tar(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sbd_mat(mask: np.ndarray) -> bytes:
    """An SBD ``cls/<id>.mat`` file: struct GTcls with the class map in Segmentation."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"GTcls": {"Segmentation": mask, "CategoriesPresent": [1]}})
    return buffer.getvalue()


# (width, height) of real VOC images: landscape, wide, portrait (the end-to-end test's three)
VOC_SIZES = [(500, 375), (500, 333), (375, 500)]
# six, two per part, for benchmarks/voc_cost.py: landscape, portrait, wide, nearly square, ...
VOC_SIZES_SIX = [(500, 375), (375, 500), (500, 333), (486, 500), (500, 281), (334, 500)]
# the three at half VOC's size, odd sides kept: benchmarks/gpu_check.py's pipeline on a GPU
VOC_SIZES_HALF = [(250, 187), (250, 167), (187, 250)]
# and at a quarter, odd sides kept: what the VOC configuration's end-to-end run reads (its crops
# and scales as shipped: the trainings crop 512 whatever the image, while CAMs and evaluation cost
# a sixteenth of VOC's)
VOC_SIZES_QUARTER = [(125, 94), (125, 83), (94, 125)]


@dataclass(frozen=True)
class VocShaped:
    voc: bytes
    sbd: bytes
    voc_train: list[str]
    voc_val: list[str]
    sbd_only: list[str]


def voc_shaped_archives(sizes: list[tuple[int, int]] = VOC_SIZES, seed: int = 0) -> VocShaped:
    """The two archives for images of the given VOC sizes: the embedded dataset's objects rendered
    at the largest side with VOC's 21 classes, cut to each size. The first third are VOC train,
    the next VOC val (masks in the VOC tar), the rest SBD's (masks as .mat), so train_aug holds
    the first and last thirds (with the default three sizes: two images, and one in val)."""
    side = max(max(size) for size in sizes)
    spec = SyntheticSpec(num_classes=20, image_size=side, train_images=len(sizes), val_images=1)
    names = [f"2008_{i:06d}" for i in range(len(sizes))]
    third = len(sizes) // 3
    voc_train, voc_val, sbd_only = names[:third], names[third : 2 * third], names[2 * third :]
    voc: dict[str, bytes] = {}
    sbd: dict[str, bytes] = {}
    rendered = generate(spec, seed)
    for name, (width, height), (_, _, image, mask, _) in zip(names, sizes, rendered, strict=False):
        image, mask = image[:height, :width], mask[:height, :width]
        objects = [CLASSES[c] for c in labels_from_mask(mask)]
        voc[f"{VOC}/JPEGImages/{name}.jpg"] = encode(image, "RGB")
        voc[f"{VOC}/Annotations/{name}.xml"] = xml(objects)
        if name in sbd_only:
            sbd[f"{SBD}/cls/{name}.mat"] = sbd_mat(mask)
        else:
            voc[f"{VOC}/SegmentationClass/{name}.png"] = encode(mask, "P")
    for split, ids in {"train": voc_train, "val": voc_val}.items():
        voc[f"{VOC}/ImageSets/Segmentation/{split}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    sbd[f"{SBD}/train.txt"] = f"{sbd_only[0]}\n{voc_val[0]}\n".encode()  # SBD overlaps VOC val
    sbd[f"{SBD}/val.txt"] = "".join(f"{i}\n" for i in [*sbd_only[1:], voc_train[0]]).encode()
    return VocShaped(tar(voc, "w"), tar(sbd, "w:gz"), voc_train, voc_val, sbd_only)
