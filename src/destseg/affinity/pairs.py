"""What AffinityNet learns from: the affinity labels of pixel pairs, and its loss on them.

Labels use the pair indexing of the network's output (:mod:`destseg.models.affinity_net`:
offset, then first pixel), so labels, predicted affinities and the random walk's transition
matrix stay consistent by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from destseg.cam.normalize import EPS
from destseg.dataset.layout import IGNORE_INDEX
from destseg.models.affinity_net import neighbour_offsets, shifted


def pair_labels(label: torch.Tensor, radius: int) -> dict[str, torch.Tensor]:
    """The affinity labels of every pixel pair of label maps (..., H, W) (0 background, 255
    ignored).

    Returns boolean tensors (..., P, H, W) in the offset order of :func:`neighbour_offsets`:
    ``bg`` both pixels background, ``fg`` both the same foreground class, ``neg`` two different
    classes (background included). A pair with an ignored pixel, or leaving the image, is in
    none of them.
    """
    bg, fg, neg = [], [], []
    for dy, dx in neighbour_offsets(radius):
        other = shifted(label, dy, dx, IGNORE_INDEX)
        valid = (label != IGNORE_INDEX) & (other != IGNORE_INDEX)
        same = valid & (label == other)
        bg.append(same & (label == 0))
        fg.append(same & (label != 0))
        neg.append(valid & (label != other))
    axis = label.dim() - 2
    return {"bg": torch.stack(bg, axis), "fg": torch.stack(fg, axis), "neg": torch.stack(neg, axis)}


def grid_labels(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Label maps (N, H, W) brought to the affinity grid ``size`` by nearest neighbour: a cell
    takes one pixel's label, never a blend of two classes."""
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0].long()


def training_pairs(radius: int, affinity: torch.Tensor, mask: torch.Tensor) -> dict:
    """The bg / fg / neg pair labels (N, P, h, w) of label maps (N, H, W) for the affinities
    (N, P, h, w) that a model of pair ``radius`` predicted on the same images."""
    return pair_labels(grid_labels(mask, affinity.shape[-2:]), radius)


def affinity_loss(
    affinity: torch.Tensor, labels: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """AffinityNet's balanced loss: -log a over background pairs and over foreground pairs,
    -log(1 - a) over different-class pairs, each averaged over its own pairs, then weighted
    1/4, 1/4, 1/2 so that the rare kinds count as much as the frequent ones (PSA, IRN).

    Returns the three terms and their weighted ``total``; a kind with no pair contributes 0.
    """
    def mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum() / mask.sum().clamp(min=1)

    terms = {
        "bg": mean(-torch.log(affinity + EPS), labels["bg"]),
        "fg": mean(-torch.log(affinity + EPS), labels["fg"]),
        "neg": mean(-torch.log(1 - affinity + EPS), labels["neg"]),
    }
    terms["total"] = terms["bg"] / 4 + terms["fg"] / 4 + terms["neg"] / 2
    return terms
