"""Segmentation and multi-label classification metrics.

Segmentation follows the VOC protocol: one confusion matrix accumulated over the whole split with
``bincount``, pixels whose ground truth is 255 ignored, IoU = TP / (TP + FP + FN) per class, and
the mean over the classes that occur (in the ground truth or in the prediction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from destseg.dataset.layout import IGNORE_INDEX


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    Pixels with ground truth 255 are skipped; a prediction of 255 (an ignored pseudo-mask
    pixel) is skipped too, since it claims no class.
    """
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in size: {gt.size} vs {pred.size}")
    keep = (gt != IGNORE_INDEX) & (pred != IGNORE_INDEX)
    gt, pred = gt[keep], pred[keep]
    if gt.size and (gt.max() >= num_classes or pred.max() >= num_classes):
        raise ValueError(f"label value out of range for {num_classes} classes")
    counts = np.bincount(gt * num_classes + pred, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN for a class absent from both ground truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """mIoU (over classes that occur), pixel accuracy and mean class accuracy."""
    iou = iou_per_class(confusion)
    total = confusion.sum()
    gt_per_class = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_acc = np.diag(confusion) / gt_per_class
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "pixel_accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "mean_class_accuracy": float(np.nanmean(class_acc[gt_per_class > 0]))
        if (gt_per_class > 0).any()
        else 0.0,
    }


def foreground_precision_recall(confusion: np.ndarray) -> tuple[float, float]:
    """Precision and recall of 'any foreground class' against background (class 0).

    A foreground pixel counts as found whatever foreground class it was given; the class
    itself is what mIoU measures.
    """
    fg_true_fg_pred = confusion[1:, 1:].sum()
    pred_fg = confusion[:, 1:].sum()
    gt_fg = confusion[1:, :].sum()
    precision = fg_true_fg_pred / pred_fg if pred_fg else 0.0
    recall = fg_true_fg_pred / gt_fg if gt_fg else 0.0
    return float(precision), float(recall)


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Non-interpolated average precision of one class: the mean of the precision at the rank
    of each positive (ties broken by sorting). NaN when there is no positive.

    Hand-written because this one function would otherwise pull in scikit-learn.
    """
    targets = np.asarray(targets).astype(bool)
    if not targets.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = targets[order]
    precision_at_k = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at_k[hits].mean())


def multilabel_scores(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict:
    """mAP over classes with a positive, and micro-averaged F1 of ``scores >= threshold``.

    ``scores`` are probabilities (N, K); ``targets`` are 0/1 (N, K).
    """
    targets = np.asarray(targets).astype(bool)
    aps = [average_precision(scores[:, k], targets[:, k]) for k in range(targets.shape[1])]
    predicted = np.asarray(scores) >= threshold
    tp = (predicted & targets).sum()
    denominator = predicted.sum() + targets.sum()
    return {
        "map": float(np.nanmean(aps)) if np.isfinite(aps).any() else 0.0,
        "f1": float(2 * tp / denominator) if denominator else 0.0,
    }


def per_class_table(confusion: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Per-class IoU with the pixel counts behind it (ground truth, predicted, true positive)."""
    return pd.DataFrame(
        {
            "class": class_names,
            "iou": iou_per_class(confusion),
            "gt_pixels": confusion.sum(1),
            "predicted_pixels": confusion.sum(0),
            "true_positive_pixels": np.diag(confusion),
        }
    )


def all_background(confusion: np.ndarray) -> np.ndarray:
    """The confusion matrix that predicting background everywhere would give on the same
    pixels: the baseline every stage must beat."""
    baseline = np.zeros_like(confusion)
    baseline[:, 0] = confusion.sum(1)
    return baseline


def per_image_table(
    ids: Sequence[str], scores: np.ndarray, labels: Mapping[str, Sequence[int]], classes: list[str]
) -> pd.DataFrame:
    """One row per image (``scores``: its mIoU and pixel accuracy, in ``ids``' order) with the
    names of the classes it holds, worst mIoU first (ties by id): where a segmenter fails."""
    table = pd.DataFrame(
        {
            "image": list(ids),
            "miou": scores[:, 0],
            "pixel_accuracy": scores[:, 1],
            "classes": [" ".join(classes[c] for c in labels[i]) for i in ids],
        }
    )
    return table.sort_values(["miou", "image"], kind="stable").reset_index(drop=True)
