"""Labelling a whole split: a labeller mapped over its images in worker processes, the label
maps written as palette PNGs and scored against the masks, and the threshold sweeps that
choose a labeller's background threshold on the tuning images.

In a ``world`` of several processes (torchrun) each process labels its shard of the images and
the counts are summed over all, so the scores do not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from destseg.cam.store import load_cam
from destseg.dataset.layout import IGNORE_INDEX, VOCLayout, load_image, save_mask
from destseg.evaluation.metrics import (
    confusion_matrix,
    foreground_precision_recall,
    segmentation_scores,
)
from destseg.evaluation.thresholds import sweep_table
from destseg.refine.labellers import Labeller, ThresholdLabeller
from destseg.runtime.distributed import World
from destseg.runtime.workers import parallel_map


def label_image(
    image_id: str,
    layout: VOCLayout,
    cam_dir: Path,
    out_dir: Path,
    labeller: Labeller,
    scored: Collection[str],
) -> tuple[np.ndarray, int, int]:
    """Write ``labeller``'s label map of one image as a palette PNG; return its confusion matrix
    against the ground truth (zeros unless the image is in ``scored``; 255 pixels are not
    counted), its number of 255 pixels and its number of pixels. The ground truth only scores
    the label map, it never feeds into it."""
    image = load_image(layout.image_path(image_id))
    num_classes = len(layout.classes)
    classes, cam = load_cam(cam_dir / f"{image_id}.npz", num_classes, image.shape[:2])
    labels = labeller(image, cam, classes)
    save_mask(out_dir / f"{image_id}.png", labels)
    if image_id in scored:
        confusion = confusion_matrix(
            layout.ground_truth(image_id, labels.shape), labels, num_classes
        )
    else:
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    return confusion, int((labels == IGNORE_INDEX).sum()), labels.size


def label_split(
    layout: VOCLayout,
    ids: Sequence[str],
    scored: Collection[str],
    *,
    cam_dir: Path,
    out_dir: Path,
    labeller: Labeller,
    workers: int,
    description: str,
    world: World | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Label every image of ``ids`` with ``labeller`` into ``out_dir`` (``workers`` processes in
    all, shared out over the ``world``)
    and score the images of ``scored``: mIoU, foreground precision and recall over the pixels
    that got a label (none of these without scored images), and the share of pixels left at
    255 over all of ``ids``; with the
    confusion matrix of the scored images these come from. In a ``world`` of several
    processes each labels its shard of ``ids`` and the counts are summed over all."""
    world = world or World()
    num_classes = len(layout.classes)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    ignored = pixels = 0
    job = partial(
        label_image,
        layout=layout,
        cam_dir=cam_dir,
        out_dir=out_dir,
        labeller=labeller,
        scored=scored,
    )
    for image_confusion, image_ignored, image_pixels in parallel_map(
        job, world.shard(ids), world.share(workers), description, progress=world.main
    ):
        confusion += image_confusion
        ignored += image_ignored
        pixels += image_pixels
    confusion = world.sum(confusion)
    ignored, pixels = world.sum(np.array([ignored, pixels], dtype=np.int64)).tolist()
    if not scored:  # nothing to score against (no masks): the share of 255 alone
        return {"ignored_fraction": ignored / pixels}, confusion
    precision, recall = foreground_precision_recall(confusion)
    scores = {
        "miou": segmentation_scores(confusion)["miou"],
        "fg_precision": precision,
        "fg_recall": recall,
        "ignored_fraction": ignored / pixels,
    }
    return scores, confusion


def image_sweep(
    image_id: str,
    layout: VOCLayout,
    cam_dir: Path,
    labeller: ThresholdLabeller,
    thresholds: Sequence[float],
) -> np.ndarray:
    """Confusion matrices (T, C, C) of one image's label maps at each background threshold."""
    image = load_image(layout.image_path(image_id))
    num_classes = len(layout.classes)
    classes, cam = load_cam(cam_dir / f"{image_id}.npz", num_classes, image.shape[:2])
    gt = layout.ground_truth(image_id, image.shape[:2])
    return np.stack(
        [
            confusion_matrix(gt, labeller(image, cam, classes, bg_threshold=t), num_classes)
            for t in thresholds
        ]
    )


def threshold_sweep(
    layout: VOCLayout,
    ids: Sequence[str],
    *,
    cam_dir: Path,
    labeller: ThresholdLabeller,
    thresholds: Sequence[float],
    workers: int,
    description: str,
    world: World | None = None,
) -> pd.DataFrame:
    """mIoU, foreground precision and recall of ``labeller`` over ``ids`` at each background
    threshold (:func:`destseg.evaluation.thresholds.sweep_table`); nothing is written. In a
    ``world`` of several processes each sweeps its shard of ``ids`` and the confusions are
    summed."""
    world = world or World()
    num_classes = len(layout.classes)
    total = np.zeros((len(thresholds), num_classes, num_classes), dtype=np.int64)
    job = partial(
        image_sweep, layout=layout, cam_dir=cam_dir, labeller=labeller, thresholds=thresholds
    )
    shards = parallel_map(
        job, world.shard(ids), world.share(workers), description, progress=world.main
    )
    for confusions in shards:
        total += confusions
    return sweep_table(thresholds, world.sum(total))
