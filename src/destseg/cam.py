"""Class activation maps: multi-scale and flip aggregation, storage, and labels from a threshold.

A CAM here is a float array (k, H, W) for the k classes present in the image (by its image-level
labels), each map in [0, 1] after per-class max normalisation, at the image's own size. Files
store only those k maps, in float16, compressed, with the class indices beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.progress import track

from destseg.cam_store import cam_to_label, save_cam
from destseg.data import image_to_tensor
from destseg.metrics import confusion_matrix
from destseg.models.classifier import Classifier
from destseg.parallel import is_main_process
from destseg.strided import rescale_image, upsample_strided
from destseg.tuning import sweep_table
from destseg.voc import VOCLayout, load_image, load_mask

EPS = 1e-5


@torch.no_grad()
def multiscale_cam(
    model: Classifier,
    image: torch.Tensor,
    classes: Sequence[int],
    scales: Sequence[float],
    flip: bool,
) -> torch.Tensor:
    """CAMs (k, H, W) of a normalised image (3, H, W) for foreground classes ``classes`` (1..K).

    At each scale the image (:func:`rescale_image`; and its mirror, with ``flip``) goes through
    the network; the ReLU'd maps are flipped back, brought to the image size by
    :func:`upsample_strided` and summed over scales and flips; each class map is then divided
    by its maximum (IRN's make_cam).
    """
    height, width = image.shape[-2:]
    channels = [c - 1 for c in classes]
    stride = model.encoder.output_stride
    total = image.new_zeros((len(channels), height, width))
    for scale in scales:
        x = rescale_image(image, scale)[None]
        if flip:
            x = torch.cat([x, x.flip(-1)])
        cams = F.relu(model.cam(x)[:, channels].float())  # float32 sums under autocast
        if flip:
            cams = cams[:1] + cams[1:].flip(-1)
        total += upsample_strided(cams, (height, width), stride)[0]
    return normalize_per_class(total)


def normalize_per_class(cam: torch.Tensor) -> torch.Tensor:
    """Divide each map of a (k, H, W) stack by its maximum (a map of zeros stays zero)."""
    return cam / (cam.amax(dim=(-2, -1), keepdim=True) + EPS)


class ThresholdSweep:
    """Confusion matrices of thresholded CAMs against the ground truth, one per threshold,
    accumulated over a split: the whole mIoU-versus-background-threshold curve in one pass."""

    def __init__(self, num_classes: int, thresholds: Sequence[float]):
        self.thresholds = [float(t) for t in thresholds]
        self.num_classes = num_classes
        self.confusions = np.zeros((len(self.thresholds), num_classes, num_classes), np.int64)

    def update(self, gt: np.ndarray, cam: np.ndarray, classes: np.ndarray) -> None:
        for i, threshold in enumerate(self.thresholds):
            self.confusions[i] += confusion_matrix(
                gt, cam_to_label(cam, classes, threshold), self.num_classes
            )

    def table(self) -> pd.DataFrame:
        """One row per threshold: miou, fg_precision, fg_recall."""
        return sweep_table(self.thresholds, self.confusions)


def generate_cams(
    model: Classifier,
    layout: VOCLayout,
    ids: Sequence[str],
    sweeps: Mapping[str, ThresholdSweep],
    scales: Sequence[float],
    flip: bool,
    device: torch.device,
    out_dir: Path,
) -> None:
    """Write the CAMs of every image of ``ids`` (for its labelled classes) to ``out_dir``; score
    each image that ``sweeps`` maps to a sweep against its ground truth there (the reported
    images in one sweep, the tuning images in another)."""
    for image_id in track(ids, description="make_cam", disable=not is_main_process()):
        classes = layout.labels[image_id]
        image = image_to_tensor(load_image(layout.image_path(image_id))).to(device)
        cam = multiscale_cam(model, image, classes, scales, flip).cpu().numpy()
        save_cam(out_dir / f"{image_id}.npz", classes, cam)
        if image_id in sweeps:
            sweeps[image_id].update(load_mask(layout.mask_path(image_id)), cam, np.asarray(classes))
