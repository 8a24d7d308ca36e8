"""CAM files (the maps of one image's present classes, float16, compressed, with their indices)
and the label map a background threshold makes of them.

Kept apart from the CAM computation so that the CPU-only refinement reads and labels CAMs
without torch.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from destseg.runtime.files import atomic_path


def save_cam(path: Path, classes: Sequence[int], cam: np.ndarray) -> None:
    """Store the CAMs of one image: class indices (int) and maps (float16), compressed."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle, classes=np.asarray(classes, dtype=np.int64), cam=cam.astype(np.float16)
        )


class CamFileError(ValueError):
    """A CAM file that is missing, damaged or does not fit its image; the message names it."""


def load_cam(
    path: Path | BinaryIO, num_classes: int | None = None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(class indices (k,), CAMs (k, H, W) float32) of one image, checked: a readable archive
    of the two arrays (never pickled objects), k maps for k distinct classes, finite values;
    with ``num_classes`` every class in 1..num_classes-1, with ``size`` (H, W) the image's."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if {"classes", "cam"} - set(data.files):
                raise CamFileError(
                    f"{path}: not a CAM file (arrays {sorted(data.files)}; expected classes, cam)"
                )
            classes, cam = data["classes"], data["cam"].astype(np.float32)
    except FileNotFoundError:
        raise CamFileError(f"{path}: CAM file not found (run the stage that writes it)") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, CamFileError):
            raise
        if "allow_pickle" in str(err):  # numpy's advice would be to run the pickle
            if isinstance(path, str | Path) and not zipfile.is_zipfile(path):
                raise CamFileError(
                    f"{path}: not a CAM file (not the .npz archive make_cam writes)"
                ) from None
            raise CamFileError(
                f"{path}: not a CAM file: it holds pickled objects, which are never loaded "
                "(they could run code)"
            ) from None
        raise CamFileError(f"{path}: not a readable CAM file ({err})") from None
    if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
        raise CamFileError(f"{path}: classes must be a list of class indices")
    if cam.ndim != 3 or cam.shape[0] != len(classes):
        raise CamFileError(
            f"{path}: maps of shape {cam.shape} for {len(classes)} classes; expected "
            f"({len(classes)}, height, width)"
        )
    if len(set(classes.tolist())) != len(classes) or (
        num_classes and not all(0 < c < num_classes for c in classes.tolist())
    ):
        raise CamFileError(
            f"{path}: classes {classes.tolist()} are not distinct foreground classes"
            + (f" 1..{num_classes - 1}" if num_classes else "")
        )
    if size is not None and cam.shape[1:] != tuple(size):
        raise CamFileError(
            f"{path}: maps of {cam.shape[1]}x{cam.shape[2]} for an image of {size[0]}x{size[1]} "
            "(height x width): the image changed or the CAMs are another dataset's; rerun make_cam"
        )
    if not np.isfinite(cam).all():
        raise CamFileError(f"{path}: the maps hold NaN or infinite values")
    return classes, cam


def cam_to_label(cam: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
    """Label map (H, W) uint8: the strongest class where its CAM exceeds ``threshold``,
    background elsewhere (the background is a constant plane at ``threshold``)."""
    if len(classes) == 0:
        return np.zeros(cam.shape[-2:], dtype=np.uint8)
    strongest = cam.argmax(0)
    lookup = np.asarray(classes, dtype=np.uint8)
    return np.where(cam.max(0) > threshold, lookup[strongest], 0).astype(np.uint8)
