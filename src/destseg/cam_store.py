"""CAM files: the maps of one image's present classes, float16, compressed, with their indices.

Kept apart from the CAM computation so that the CPU-only refinement reads CAMs without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from destseg.files import atomic_path


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
