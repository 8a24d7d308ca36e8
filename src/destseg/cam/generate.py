"""Class activation maps: multi-scale and flip aggregation, storage, and labels from a threshold.

A CAM here is a float array (k, H, W) for the k classes present in the image (by its image-level
labels), each map in [0, 1] after per-class max normalisation, at the image's own size. Files
store only those k maps, in float16, compressed, with the class indices beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from destseg.cam.normalize import normalize_per_class
from destseg.cam.store import save_cam
from destseg.cam.strided import rescale_image, upsample_strided
from destseg.dataset.layout import IGNORE_INDEX, VOCLayout, image_size, load_image
from destseg.dataset.torch_dataset import image_to_tensor
from destseg.evaluation.thresholds import sweep_table
from destseg.models.classifier import Classifier
from destseg.runtime.distributed import World
from destseg.runtime.overlap import overlaps, prefetch, writer
from destseg.runtime.pace import paced


@torch.no_grad()
def multiscale_cams(
    model: Classifier,
    images: torch.Tensor,
    classes: Sequence[Sequence[int]],
    scales: Sequence[float],
    flip: bool,
) -> list[torch.Tensor]:
    """CAMs (k_i, H, W) of a batch of normalised images of one size (N, 3, H, W), image i for
    its foreground classes ``classes[i]`` (1..K).

    At each scale the images (:func:`rescale_image`; and their mirrors, with ``flip``) go
    through the network in one pass; each image's ReLU'd maps are flipped back, brought to the
    image size by :func:`upsample_strided` and summed over scales and flips; each class map is
    then divided by its maximum (IRN's make_cam).
    """
    n, height, width = images.shape[0], *images.shape[-2:]
    channels = [[c - 1 for c in image_classes] for image_classes in classes]
    stride = model.encoder.output_stride
    totals = [images.new_zeros((len(c), height, width)) for c in channels]
    for scale in scales:
        x = rescale_image(images, scale)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        cams = F.relu(model.cam(x).float())  # float32 sums under autocast
        if flip:
            cams = cams[:n] + cams[n:].flip(-1)
        for i, image_channels in enumerate(channels):
            if image_channels:  # an image with no foreground label has no map (k_i = 0)
                maps = cams[i : i + 1, image_channels]
                totals[i] += upsample_strided(maps, (height, width), stride)[0]
    return [normalize_per_class(total) for total in totals]


class ThresholdSweep:
    """Confusion matrices of thresholded CAMs against the ground truth, one per threshold,
    accumulated over a split: the whole mIoU-versus-background-threshold curve in one pass."""

    def __init__(self, num_classes: int, thresholds: Sequence[float]):
        self.thresholds = [float(t) for t in thresholds]
        self.num_classes = num_classes
        self.confusions = np.zeros((len(self.thresholds), num_classes, num_classes), np.int64)

    def update(self, gt: np.ndarray, cam: np.ndarray, classes: np.ndarray) -> None:
        """Add one image: the confusion at every threshold from one pass over its pixels (what
        :func:`cam_to_label` and :func:`confusion_matrix` give per threshold, counted at once).

        A pixel is labelled with its strongest class at the thresholds below its CAM maximum
        and background at the others, so counting each pixel by how many thresholds lie below
        its maximum, then summing those counts over the thresholds, gives every matrix."""
        k = self.num_classes
        gt = np.asarray(gt).ravel().astype(np.int64)
        if len(classes) == 0:
            strongest, peak = np.zeros_like(gt), np.full(gt.shape, -np.inf, np.float32)
        else:
            flat = cam.reshape(len(classes), -1)
            strongest = np.asarray(classes, dtype=np.int64)[flat.argmax(0)]
            peak = flat.max(0)
        if gt.shape != strongest.shape:
            raise ValueError(f"ground truth and CAM differ in size: {gt.size} vs {strongest.size}")
        keep = gt != IGNORE_INDEX
        gt, strongest, peak = gt[keep], strongest[keep], peak[keep]
        if gt.size and (gt.max() >= k or strongest.max() >= k):
            raise ValueError(f"label value out of range for {k} classes")
        # the comparison of cam_to_label: the CAM's float32 against each threshold in float32
        order = np.argsort(self.thresholds, kind="stable")
        ranked = np.asarray(self.thresholds, dtype=np.float32)[order]
        below = np.searchsorted(ranked, peak, side="left")  # thresholds under each maximum
        n = len(ranked)
        foreground = np.bincount((below * k + gt) * k + strongest, minlength=(n + 1) * k * k)
        background = np.bincount(below * k + gt, minlength=(n + 1) * k)
        foreground = foreground.reshape(n + 1, k, k)
        background = background.reshape(n + 1, k)
        # threshold number j (in ascending order) labels the pixels with below > j foreground
        fg = foreground[::-1].cumsum(0)[::-1][1:]  # sum over below >= j + 1
        bg = background.cumsum(0)[:-1]  # sum over below <= j
        sweep = fg.copy()
        sweep[:, :, 0] += bg
        self.confusions[order] += sweep

    def table(self) -> pd.DataFrame:
        """One row per threshold: miou, fg_precision, fg_recall."""
        return sweep_table(self.thresholds, self.confusions)


def generate_cams(
    model: Classifier,
    layout: VOCLayout,
    ids: Sequence[str],
    *,
    sweeps: Mapping[str, ThresholdSweep],
    scales: Sequence[float],
    flip: bool,
    device: torch.device,
    out_dir: Path,
    batch_size: int = 1,
    world: World | None = None,
) -> None:
    """Write the CAMs of every image of ``ids`` (for its labelled classes) to ``out_dir``; score
    each image that ``sweeps`` maps to a sweep against its ground truth there (the reported
    images in one sweep, the tuning images in another).

    Up to ``batch_size`` images of one size go through the network together: the images are
    taken in order of size (VOC's come in a few dozen sizes). In a ``world`` of several
    processes each takes every N-th batch, so an image meets the same batch whatever the
    number of processes: a convolution's rounding can depend on its batch, and the files stay
    byte-identical to one process's."""
    world = world or World()
    batches = size_batches(ids, lambda i: image_size(layout.image_path(i)), batch_size)
    batches = world.shard(batches)

    def load(batch: list[str]) -> tuple[list[list[int]], torch.Tensor]:
        classes = [layout.labels[i] for i in batch]
        return classes, torch.stack(
            [image_to_tensor(load_image(layout.image_path(i))) for i in batch]
        )

    def store(batch: list[str], classes: list[list[int]], cams: list[np.ndarray]) -> None:
        for image_id, image_classes, cam in zip(batch, classes, cams, strict=True):
            save_cam(out_dir / f"{image_id}.npz", image_classes, cam)
            if image_id in sweeps:
                gt = layout.ground_truth(image_id, cam.shape[1:])
                sweeps[image_id].update(gt, cam, np.asarray(image_classes))

    # decoding and writing overlap the network (destseg.runtime.overlap)
    threaded = overlaps(device)
    with writer(threaded) as files:
        loaded = prefetch(batches, load, threaded)
        for batch, (classes, images) in paced(
            loaded, len(batches), "make_cam", quiet=not world.main, unit="batches"
        ):
            cams = multiscale_cams(model, images.to(device), classes, scales, flip)
            files.submit(store, batch, classes, [cam.cpu().numpy() for cam in cams])


def size_batches(
    ids: Sequence[str], size: Callable[[str], tuple[int, int]], batch_size: int
) -> list[list[str]]:
    """``ids`` in batches of at most ``batch_size`` whose images have one ``size``: taken in
    order of size (stable, so one size keeps the list's order), each size's run cut into
    batches."""
    sizes = {image_id: size(image_id) for image_id in ids}
    by_size = sorted(ids, key=sizes.__getitem__)
    return [
        group[start : start + batch_size]
        for _, run in groupby(by_size, key=sizes.__getitem__)
        for group in [list(run)]
        for start in range(0, len(group), batch_size)
    ]
