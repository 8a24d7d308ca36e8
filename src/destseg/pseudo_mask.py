"""From CAMs to pseudo-masks: probabilities over background + present classes, refined."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from destseg.cam_store import load_cam
from destseg.crf import DenseCRF
from destseg.metrics import confusion_matrix
from destseg.voc import IGNORE_INDEX, VOCLayout, load_image, load_mask, save_mask

EPS = 1e-5


def cam_probabilities(cam: np.ndarray, bg_threshold: float) -> np.ndarray:
    """Probabilities (k+1, H, W) over background and the k CAM classes.

    The background score is the constant plane ``bg_threshold`` used to label CAMs, so the
    argmax of these probabilities is exactly the thresholded CAM; the scores are normalised to
    sum to one so that the CRF's unary is -log of a distribution.
    """
    background = np.full((1, *cam.shape[1:]), bg_threshold, dtype=np.float32)
    scores = np.maximum(np.concatenate([background, cam.astype(np.float32)]), EPS)
    return scores / scores.sum(0, keepdims=True)


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


def refine_image(
    image_id: str,
    layout: VOCLayout,
    cam_dir: Path,
    out_dir: Path,
    bg_threshold: float,
    crf: DenseCRF,
    min_confidence: float,
    scored: Collection[str],
) -> tuple[np.ndarray, int, int]:
    """Write the CRF pseudo-mask of one image; return its confusion matrix against the ground
    truth (zeros unless the image is in ``scored``), its number of ignored pixels and its number
    of pixels. The ground truth only scores the pseudo-mask, it never feeds into it."""
    classes, cam = load_cam(cam_dir / f"{image_id}.npz")
    image = load_image(layout.image_path(image_id))
    pseudo = crf_pseudo_mask(image, cam, classes, bg_threshold, crf, min_confidence)
    save_mask(out_dir / f"{image_id}.png", pseudo)
    num_classes = len(layout.classes)
    if image_id in scored:
        confusion = confusion_matrix(load_mask(layout.mask_path(image_id)), pseudo, num_classes)
    else:
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    return confusion, int((pseudo == IGNORE_INDEX).sum()), pseudo.size
