"""CAM files (the maps of one image's present classes, float16, compressed, with their indices)
and the label map a background threshold makes of them.

Kept apart from the CAM computation so that the CPU-only refinement reads and labels CAMs
without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from destseg.runtime.files import atomic_path


def save_cam(path: Path, classes: Sequence[int], cam: np.ndarray) -> None:
    """Store the CAMs of one image: class indices (int) and maps (float16), compressed."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle, classes=np.asarray(classes, dtype=np.int64), cam=cam.astype(np.float16)
        )


def load_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(class indices (k,), CAMs (k, H, W) float32) of one image."""
    with np.load(path) as data:
        return data["classes"], data["cam"].astype(np.float32)


def cam_to_label(cam: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
    """Label map (H, W) uint8: the strongest class where its CAM exceeds ``threshold``,
    background elsewhere (the background is a constant plane at ``threshold``)."""
    if len(classes) == 0:
        return np.zeros(cam.shape[-2:], dtype=np.uint8)
    strongest = cam.argmax(0)
    lookup = np.asarray(classes, dtype=np.uint8)
    return np.where(cam.max(0) > threshold, lookup[strongest], 0).astype(np.uint8)
