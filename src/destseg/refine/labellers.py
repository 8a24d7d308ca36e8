"""From CAMs to label maps: pseudo-masks (for segmentation) and confident regions (for affinity).

Every labeller here is a function ``(image, cam, classes) -> label map`` once its settings are
bound with ``functools.partial``, so :mod:`destseg.refine.labelling` can map any of them over a
dataset in worker processes and score the result the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from destseg.cam.normalize import EPS
from destseg.cam.store import cam_to_label
from destseg.dataset.layout import IGNORE_INDEX
from destseg.refine.crf import DenseCRF

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
