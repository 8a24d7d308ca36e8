"""From CAMs to label maps: pseudo-masks (for segmentation) and confident regions (for affinity).

Every labeller here is a function ``(image, cam, classes) -> label map`` once its settings are
bound with ``functools.partial``, so :func:`label_image` can map any of them over a dataset in
worker processes and score the result the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from destseg.cam_store import cam_to_label, load_cam
from destseg.crf import DenseCRF
from destseg.distributed import World
from destseg.metrics import confusion_matrix, foreground_precision_recall, segmentation_scores
from destseg.parallel import parallel_map
from destseg.tuning import sweep_table
from destseg.voc import IGNORE_INDEX, VOCLayout, load_image, load_mask, save_mask

EPS = 1e-5

Labeller = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# A labeller whose background threshold is still open: called with ``bg_threshold=...``.
ThresholdLabeller = Callable[..., np.ndarray]


def cam_probabilities(cam: np.ndarray, bg_threshold: float) -> np.ndarray:
    """Probabilities (k+1, H, W) over background and the k CAM classes.

    The background score is the constant plane ``bg_threshold`` used to label CAMs, so the
    argmax of these probabilities is exactly the thresholded CAM; the scores are normalised to
    sum to one so that the CRF's unary is -log of a distribution.
    """
    background = np.full((1, *cam.shape[1:]), bg_threshold, dtype=np.float32)
    scores = np.maximum(np.concatenate([background, cam.astype(np.float32)]), EPS)
    return scores / scores.sum(0, keepdims=True)


def threshold_pseudo_mask(
    image: np.ndarray, cam: np.ndarray, classes: np.ndarray, bg_threshold: float
) -> np.ndarray:
    """Label map (H, W) uint8: the thresholded CAM, no refinement (the image is not used)."""
    return cam_to_label(cam, classes, bg_threshold)


def crf_pseudo_mask(
    image: np.ndarray,
    cam: np.ndarray,
    classes: np.ndarray,
    bg_threshold: float,
    crf: DenseCRF,
    min_confidence: float = 0.0,
) -> np.ndarray:
    """Label map (H, W) uint8 from CAMs refined by the dense CRF.

    Pixels whose CRF posterior for the winning label is below ``min_confidence`` get 255, so
    segmentation training ignores them (0 keeps every pixel).
    """
    posterior = crf(image, cam_probabilities(cam, bg_threshold))
    lookup = np.concatenate([[0], np.asarray(classes)]).astype(np.uint8)
    labels = lookup[posterior.argmax(0)]
    if min_confidence > 0:
        labels[posterior.max(0) < min_confidence] = IGNORE_INDEX
    return labels


def confident_labels(
    image: np.ndarray,
    cam: np.ndarray,
    classes: np.ndarray,
    conf_fg: float,
    conf_bg: float,
    crf: DenseCRF | None,
) -> np.ndarray:
    """The regions AffinityNet learns from (IRN's recipe): a class where the CAM labelled at the
    high threshold ``conf_fg`` says so, background where even the low threshold ``conf_bg``
    says background, 255 (unsure) in between. With ``crf`` both labellings are CRF-refined
    first, which snaps the confident regions to image edges."""
    if not 0 < conf_bg <= conf_fg:
        raise ValueError(f"need 0 < conf_bg <= conf_fg, got {conf_bg} and {conf_fg}")

    def labelled(threshold: float) -> np.ndarray:
        if crf is None:
            return cam_to_label(cam, classes, threshold)
        return crf_pseudo_mask(image, cam, classes, threshold, crf)

    foreground, background = labelled(conf_fg), labelled(conf_bg)
    labels = foreground.copy()
    labels[foreground == 0] = IGNORE_INDEX
    labels[(foreground == 0) & (background == 0)] = 0
    return labels


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
    classes, cam = load_cam(cam_dir / f"{image_id}.npz")
    labels = labeller(load_image(layout.image_path(image_id)), cam, classes)
    save_mask(out_dir / f"{image_id}.png", labels)
    num_classes = len(layout.classes)
    if image_id in scored:
        confusion = confusion_matrix(load_mask(layout.mask_path(image_id)), labels, num_classes)
    else:
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    return confusion, int((labels == IGNORE_INDEX).sum()), labels.size


def label_split(
    layout: VOCLayout,
    ids: Sequence[str],
    scored: Collection[str],
    cam_dir: Path,
    out_dir: Path,
    labeller: Labeller,
    workers: int,
    description: str,
    world: World | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Label every image of ``ids`` with ``labeller`` into ``out_dir`` (``workers`` processes)
    and score the images of ``scored``: mIoU, foreground precision and recall over the pixels
    that got a label, and the share of pixels left at 255 over all of ``ids``; with the
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
        job, world.shard(ids), workers, description
    ):
        confusion += image_confusion
        ignored += image_ignored
        pixels += image_pixels
    confusion = world.sum(confusion)
    ignored, pixels = world.sum(np.array([ignored, pixels], dtype=np.int64)).tolist()
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
    classes, cam = load_cam(cam_dir / f"{image_id}.npz")
    image = load_image(layout.image_path(image_id))
    gt = load_mask(layout.mask_path(image_id))
    num_classes = len(layout.classes)
    return np.stack(
        [
            confusion_matrix(gt, labeller(image, cam, classes, bg_threshold=t), num_classes)
            for t in thresholds
        ]
    )


def threshold_sweep(
    layout: VOCLayout,
    ids: Sequence[str],
    cam_dir: Path,
    labeller: ThresholdLabeller,
    thresholds: Sequence[float],
    workers: int,
    description: str,
    world: World | None = None,
) -> pd.DataFrame:
    """mIoU, foreground precision and recall of ``labeller`` over ``ids`` at each background
    threshold (:func:`destseg.tuning.sweep_table`); nothing is written. In a ``world`` of
    several processes each sweeps its shard of ``ids`` and the confusions are summed."""
    world = world or World()
    num_classes = len(layout.classes)
    total = np.zeros((len(thresholds), num_classes, num_classes), dtype=np.int64)
    job = partial(
        image_sweep, layout=layout, cam_dir=cam_dir, labeller=labeller, thresholds=thresholds
    )
    for confusions in parallel_map(job, world.shard(ids), workers, description):
        total += confusions
    return sweep_table(thresholds, world.sum(total))
