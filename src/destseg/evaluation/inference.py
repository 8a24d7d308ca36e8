"""Running trained networks over a split: classification scores and segmentation predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from destseg.dataset.layout import VOCLayout, load_image, save_mask
from destseg.dataset.torch_dataset import image_to_tensor, same_size_batches
from destseg.evaluation.metrics import confusion_matrix, segmentation_scores
from destseg.runtime.device import to_device
from destseg.runtime.pace import paced


@torch.no_grad()
def classify(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores (N, K) and 0/1 targets (N, K) over a dataset of whole images, in the
    dataset's order (``batch_size`` images of one size at a time)."""
    was_training = model.training
    model.eval()
    scores, targets = [], []
    for batch in same_size_batches(dataset, batch_size):
        batch = to_device(batch, device)
        scores.append(torch.sigmoid(model(batch["image"]).float()).cpu())
        targets.append(batch["target"].cpu())
    model.train(was_training)
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()


@torch.no_grad()
def segment(
    model: nn.Module, image: torch.Tensor, scales: Sequence[float], flip: bool
) -> torch.Tensor:
    """Class probabilities (C, H, W) of a normalised image (3, H, W), averaged over scales and,
    with ``flip``, over the mirrored image."""
    height, width = image.shape[-2:]
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        x = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        probs = model(x).float().softmax(1)  # float32 under autocast too
        if flip:
            probs = (probs[:1] + probs[1:].flip(-1)) / 2
        probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)[0]
        total = probs if total is None else total + probs
    return total / len(scales)


def predict(
    model: nn.Module, path: Path, scales: Sequence[float], flip: bool, device: torch.device
) -> np.ndarray:
    """The label map (H, W) uint8 that ``model`` predicts for the image file ``path``."""
    image = image_to_tensor(load_image(path)).to(device)
    return segment(model, image, scales, flip).argmax(0).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def validation_confusion(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    device: torch.device,
    batch_size: int = 16,
) -> np.ndarray:
    """The confusion matrix (``num_classes`` with the background) of ``model``'s single-scale
    predictions on a dataset of whole images with their masks (items with ``image`` and
    ``mask``; ``batch_size`` images of one size at a time), against those masks.

    The cheap check a training runs every few epochs, as torchvision's segmentation reference
    and mmsegmentation validate: one scale and no flip, nothing written; the evaluate stage's
    multi-scale, flipped prediction of the whole split is the number to report.
    """
    was_training = model.training
    model.eval()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for batch in same_size_batches(dataset, batch_size):
        batch = to_device(batch, device)
        pred = model(batch["image"]).argmax(1).cpu().numpy()
        confusion += confusion_matrix(batch["mask"].cpu().numpy(), pred, num_classes)
    model.train(was_training)
    return confusion


def evaluate_segmenter(
    model: nn.Module,
    layout: VOCLayout,
    ids: Sequence[str],
    *,
    scales: Sequence[float],
    flip: bool,
    device: torch.device,
    out_dir: Path,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every image of ``ids``, save the label maps as palette PNGs in ``out_dir`` and
    return the confusion matrix against the ground truth, accumulated over all of them, and
    each image's own mIoU and pixel accuracy (an array (len(ids), 2), in ``ids``' order: the
    worst images of a split are found from it). A progress bar with ``progress``: the main
    process of several shows it."""
    num_classes = len(layout.classes)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    per_image = np.zeros((len(ids), 2))
    for index, image_id in enumerate(paced(ids, len(ids), "evaluate", quiet=not progress)):
        pred = predict(model, layout.image_path(image_id), scales, flip, device)
        save_mask(out_dir / f"{image_id}.png", pred)
        own = confusion_matrix(layout.ground_truth(image_id, pred.shape), pred, num_classes)
        scores = segmentation_scores(own)
        per_image[index] = scores["miou"], scores["pixel_accuracy"]
        confusion += own
    return confusion, per_image
