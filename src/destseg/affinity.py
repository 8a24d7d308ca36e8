"""Training AffinityNet: its labels on the feature grid, and its accuracy on true masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from destseg.data import same_size_batches
from destseg.device import to_device
from destseg.models.affinity import AffinityNet
from destseg.pairs import pair_labels


def grid_labels(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Label maps (N, H, W) brought to the affinity grid ``size`` by nearest neighbour: a cell
    takes one pixel's label, never a blend of two classes."""
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0].long()


def training_pairs(radius: int, affinity: torch.Tensor, mask: torch.Tensor) -> dict:
    """The bg / fg / neg pair labels (N, P, h, w) of label maps (N, H, W) for the affinities
    (N, P, h, w) that a model of pair ``radius`` predicted on the same images."""
    return pair_labels(grid_labels(mask, affinity.shape[-2:]), radius)


@torch.no_grad()
def affinity_scores(
    model: AffinityNet, dataset: Dataset, device: torch.device, batch_size: int = 16
) -> dict:
    """How well predicted affinities separate pairs of the ground-truth masks, at 0.5: the
    share of same-label pairs (background or one class) above it, of different-label pairs
    below it, and their mean (balanced accuracy). Counted over whole images, ``batch_size`` of
    one size at a time."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(4, dtype=torch.float64)  # positives right, positives, negatives ...
    for batch in same_size_batches(dataset, batch_size):
        batch = to_device(batch, device)
        affinity = model(batch["image"])
        pairs = training_pairs(model.radius, affinity, batch["mask"])
        positive = pairs["bg"] | pairs["fg"]
        high = affinity > 0.5
        counts += torch.tensor(
            [
                (high & positive).sum().item(),
                positive.sum().item(),
                (~high & pairs["neg"]).sum().item(),
                pairs["neg"].sum().item(),
            ],
            dtype=torch.float64,
        )
    model.train(was_training)
    pos = float(counts[0] / counts[1]) if counts[1] else 0.0
    neg = float(counts[2] / counts[3]) if counts[3] else 0.0
    return {"pos_accuracy": pos, "neg_accuracy": neg, "balanced_accuracy": (pos + neg) / 2}
