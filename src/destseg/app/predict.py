"""``destseg predict``: segment new images with a segmenter model file: label maps, overlays with
class names, one contact sheet.

    destseg predict photos/ more/img_001.png --out predictions

Files and folders are taken as given (a folder: every file in it, not its subfolders). Every
image any common format holds (JPEG, PNG, WebP, BMP, TIFF, GIF: whatever Pillow reads) is
segmented as the evaluate stage segments (``--scale`` repeated for several scales, ``--flip`` for
the mirrored image too; with ``--crf``, then refined by a dense CRF with DeepLab's kernels, the
defaults of ``refine.crf``); a file that is not an image is named in one warning line, never
skipped silently, and an image that does not decode stops the run naming it. ``--out`` then holds

- ``<name>.png``: the label map, one class index per pixel (VOC palette, 0 background);
- ``<name>_overlay.png``: the image, the prediction over it, and a legend of the class names;
- ``contact_sheet.png``: every overlay's prediction beside its image, one row per image.

The class names are those the model file carries (the pipeline's trainings store their
dataset's), else those of ``--dataset`` (the ``classes.json`` that ``prepare`` writes). Two
inputs with one file name (``a/x.jpg``, ``b/x.png``) are refused: their outputs would
overwrite each other.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer
from PIL import Image

from destseg.dataset.layout import DECODE_ERRORS, VOCLayout, load_image, save_mask
from destseg.dataset.torch_dataset import image_to_tensor
from destseg.evaluation.inference import segment
from destseg.figures.gallery import figure, label_overlay, legend_for
from destseg.models.model_file import load_model, stored_classes
from destseg.models.segmenter import Segmenter
from destseg.refine.crf import DenseCRF
from destseg.runtime.device import AMP_MODES, Precision, resolve_device, resolve_precision
from destseg.runtime.files import atomic_path
from destseg.runtime.pace import paced
from destseg.runtime.shell import InputError, check_outputs, require

# the longer side of each tile of the overlay figure and of the contact sheet
TILE = 320


def image_files(inputs: list[Path]) -> list[Path]:
    """The image files of ``inputs`` (files, and the files of folders), in order; other files
    are named in one warning and left out. Refused: a missing input, no image at all, and two
    images with one name (their outputs would collide)."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file())
        else:
            files.append(require(path, "image"))
    images, others = [], []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
        except DECODE_ERRORS:  # a file Pillow cannot identify: not an image
            others.append(path)
            continue
        images.append(path)
    if others:
        shown = ", ".join(str(p) for p in others[:3]) + (", ..." if len(others) > 3 else "")
        warnings.warn(f"{len(others)} files are not images and are left out: {shown}", stacklevel=2)
    if not images:
        raise InputError(f"{', '.join(map(str, inputs))}: no image to segment")
    names: dict[str, Path] = {}
    for path in images:
        if path.stem in names:
            raise InputError(
                f"{names[path.stem]} and {path}: one output name ({path.stem}.png) for two images"
            )
        names[path.stem] = path
    return images


def labels_of(probs: np.ndarray, image: np.ndarray, dense: DenseCRF | None) -> np.ndarray:
    """The label map (H, W) uint8 of class probabilities (C, H, W): their argmax, or with
    ``dense`` the argmax of the CRF's posterior over the image (as DeepLab refined its
    predictions; here with the refine stage's kernels)."""
    if dense is not None:
        probs = dense(image, probs)
    return probs.argmax(0).astype(np.uint8)



ModelOption = Annotated[Path, typer.Option("--model", help="Segmenter model file.")]
DatasetOption = Annotated[
    Path, typer.Option(help="Dataset naming the classes, for model files without them.")
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA if present) | cpu | cuda | cuda:N.")
]
AmpOption = Annotated[str, typer.Option("--amp", help="Mixed precision: auto | bf16 | fp16 | off.")]


def class_names(model_path: Path, dataset: Path) -> list[str]:
    """The class names, background first: those the model file carries, else the dataset's."""
    classes = stored_classes(require(model_path, "segmenter model file (run train_seg)"))
    if classes is None:  # a model file written before they were stored
        classes = VOCLayout(require(dataset, "dataset the segmenter was trained on")).classes
    return classes


def check_scales(scales: Sequence[float]) -> list[float]:
    """``scales`` if each is a positive, finite factor of the image size."""
    for scale in scales:
        if not 0 < scale <= 8:
            raise InputError(f"--scale {scale}: a factor of the image size in (0, 8]")
    return list(scales)


def chosen_device(device: str, amp: str) -> tuple[torch.device, Precision]:
    """The ``--device`` and its ``--amp`` precision, each refused in one line naming it."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise InputError(f"--device {device}: choose auto, cpu, cuda or cuda:N")
    if amp not in AMP_MODES:
        raise InputError(f"--amp {amp}: choose one of {', '.join(AMP_MODES)}")
    try:
        resolved = resolve_device(device)
    except ValueError as err:
        raise InputError(f"--device {device}: {err}") from None
    return resolved, resolve_precision(amp, resolved)


def main(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and folders of images.")],
    model_path: ModelOption = Path("data/train_seg/model.pt"),
    out: Annotated[Path, typer.Option(help="Folder of label maps and overlays.")] = Path(
        "predictions"
    ),
    scales: Annotated[
        list[float] | None,
        typer.Option("--scale", help="Scale of the image (repeat to average several; 1.0)."),
    ] = None,
    flip: Annotated[
        bool, typer.Option(help="Average with the mirrored image's prediction.")
    ] = False,
    crf: Annotated[
        bool, typer.Option("--crf", help="Refine each prediction with a dense CRF.")
    ] = False,
    device_name: DeviceOption = "auto",
    amp_name: AmpOption = "auto",
    dataset: DatasetOption = Path("data/dataset"),
) -> None:
    """Segment every image of INPUTS into --out: label maps, overlays naming the classes, a
    contact sheet."""
    check_outputs("predict", folders=[out])
    chosen = check_scales(scales or [1.0])
    device, amp = chosen_device(device_name, amp_name)
    classes = class_names(model_path, dataset)
    paths = image_files(inputs)
    model, _ = load_model(model_path, Segmenter, device, len(classes))
    amp.place(model)
    dense = DenseCRF() if crf else None
    write_predictions(model, paths, out, classes, chosen, flip, dense, amp)
    print(f"predict: {len(paths)} images -> {out} (label maps, overlays, contact_sheet.png)")


def label_maps(
    model: torch.nn.Module,
    paths: list[Path],
    scales: Sequence[float],
    flip: bool,
    dense: DenseCRF | None,
    amp: Precision,
) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    """Each image of ``paths`` with its label map, ``(path, image, labels)``, in order and with a
    progress line: what ``destseg predict`` and the VOC test-set export write."""
    device = next(model.parameters()).device
    for path in paced(paths, len(paths), "predict"):
        image = load_image(path)
        with amp.autocast():
            probs = segment(model, image_to_tensor(image).to(device), scales, flip)
        yield path, image, labels_of(probs.float().cpu().numpy(), image, dense)


def write_predictions(
    model: torch.nn.Module,
    paths: list[Path],
    out: Path,
    classes: list[str],
    scales: Sequence[float],
    flip: bool,
    dense: DenseCRF | None,
    amp: Precision,
) -> None:
    """Write into ``out`` (replaced as a whole) the label map and the overlay of each image of
    ``paths``, and the contact sheet of all."""
    rows = []
    with atomic_path(out, directory=True, owner="predict") as tmp:
        for path, image, labels in label_maps(model, paths, scales, flip, dense, amp):
            save_mask(tmp / f"{path.stem}.png", labels)
            panels = [(path.name, image), ("prediction", label_overlay(image, labels))]
            sheet = figure(panels, legend_for(np.unique(labels), classes), TILE)
            sheet.save(tmp / f"{path.stem}_overlay.png")
            rows.append(sheet)
        width = max(row.width for row in rows)
        contact = Image.new("RGB", (width, sum(row.height for row in rows)), "white")
        y = 0
        for row in rows:
            contact.paste(row, (0, y))
            y += row.height
        contact.save(tmp / "contact_sheet.png")
