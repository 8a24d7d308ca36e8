"""AffinityNet's accuracy on true masks: the score train_aff logs after every epoch."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from destseg.affinity.pairs import training_pairs
from destseg.dataset.torch_dataset import same_size_batches
from destseg.models.affinity_net import AffinityNet
from destseg.runtime.device import to_device


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
