"""Pixel pairs within a radius: their offsets, their affinity labels, predicted affinities and
AffinityNet's loss on them.

Pairs are indexed by an offset (dy, dx) within a radius, each unordered pair once (the offsets
cover half the disc), and by the first pixel of the pair: an array (..., P, H, W) holds for
offset p the pair ((y, x), (y + dy_p, x + dx_p)). Labels, predicted affinities and the random
walk's transition matrix all use this indexing, so the three stay consistent by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from destseg.cam.normalize import EPS
from destseg.dataset.layout import IGNORE_INDEX


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) with 0 < dy^2 + dx^2 < radius^2, one of each pair of opposites."""
    if radius < 2:
        raise ValueError(f"radius must be 2 or more to have neighbours, got {radius}")
    return [
        (dy, dx)
        for dy in range(radius)
        for dx in range(-radius + 1, radius)
        if 0 < dy * dy + dx * dx < radius * radius and (dy > 0 or dx > 0)
    ]


def shifted(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]`` over the last two axes, ``fill`` where that
    falls outside (``dy >= 0``, as for every offset of :func:`neighbour_offsets`)."""
    height, width = x.shape[-2:]
    out = torch.full_like(x, fill)
    if dy < height and abs(dx) < width:
        out[..., : height - dy, max(0, -dx) : width - max(0, dx)] = x[
            ..., dy:, max(0, dx) : width - max(0, -dx)
        ]
    return out


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


def pair_affinity(features: torch.Tensor, radius: int) -> torch.Tensor:
    """AffinityNet's affinity ``exp(-mean_d |f_i - f_j|)`` of every pair, (N, P, H, W) from
    features (N, D, H, W): 1 for identical features, towards 0 as they differ. Pairs leaving
    the map get a value too; the labels and the transition matrix leave them out."""
    return torch.stack(
        [
            torch.exp(-(features - shifted(features, dy, dx, 0.0)).abs().mean(1))
            for dy, dx in neighbour_offsets(radius)
        ],
        1,
    )


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
