"""Affinity between neighbouring pixels, and CAM propagation by a random walk (AffinityNet).

Pixel pairs are indexed by an offset (dy, dx) within a radius, each unordered pair once (the
offsets cover half the disc), and by the first pixel of the pair: an array (P, H, W) holds for
offset p the pair ((y, x), (y + dy_p, x + dx_p)). Affinity labels, predicted affinities and the
transition matrix all use this indexing, so the three stay consistent by construction.

The transition matrix is sparse (N x N with N = H * W, about P nonzeros per row), so memory grows
with the number of pixels times the neighbourhood, never with N squared as a dense matrix
(AffinityNet's implementation) would on VOC-size maps.
"""

from __future__ import annotations

import numpy as np
import torch

from destseg.voc import IGNORE_INDEX


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


def _shifted(array: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[y, x] = array[y + dy, x + dx]``, ``fill`` where that falls outside."""
    height, width = array.shape
    out = np.full_like(array, fill)
    out[: height - dy, max(0, -dx) : width - max(0, dx)] = array[
        dy:, max(0, dx) : width - max(0, -dx)
    ]
    return out


def pair_labels(label: np.ndarray, radius: int) -> dict[str, np.ndarray]:
    """The affinity labels of every pixel pair of a label map (0 background, 255 ignored).

    Returns boolean arrays (P, H, W) in the offset order of :func:`neighbour_offsets`:
    ``bg`` both pixels background, ``fg`` both the same foreground class, ``neg`` two different
    classes (background included). A pair with an ignored pixel, or leaving the image, is in
    none of them.
    """
    bg, fg, neg = [], [], []
    for dy, dx in neighbour_offsets(radius):
        other = _shifted(label, dy, dx, IGNORE_INDEX)
        valid = (label != IGNORE_INDEX) & (other != IGNORE_INDEX)
        same = valid & (label == other)
        bg.append(same & (label == 0))
        fg.append(same & (label != 0))
        neg.append(valid & (label != other))
    return {"bg": np.stack(bg), "fg": np.stack(fg), "neg": np.stack(neg)}


def transition_matrix(affinity: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """Row-stochastic sparse (N, N) matrix from affinities (P, H, W) in [0, 1].

    Each pair gets weight ``affinity ** beta`` in both directions (beta > 1 sharpens: weak
    affinities fade first) and every pixel a self-loop of weight 1; rows are then normalised
    to sum to one, so one walk step replaces a value by a weighted mean over its neighbourhood.
    """
    offsets = neighbour_offsets(radius)
    num_offsets, height, width = affinity.shape
    if num_offsets != len(offsets):
        raise ValueError(f"affinity has {num_offsets} offsets, radius {radius} has {len(offsets)}")
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols, values = [], [], []
    for p, (dy, dx) in enumerate(offsets):
        inside = (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)
        first = (ys * width + xs)[inside]
        second = ((ys + dy) * width + (xs + dx))[inside]
        weight = affinity[p][inside].clamp(0, 1) ** beta
        rows += [first, second]
        cols += [second, first]
        values += [weight, weight]
    n = height * width
    diagonal = torch.arange(n)
    rows.append(diagonal)
    cols.append(diagonal)
    values.append(torch.ones(n, dtype=affinity.dtype))
    row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
    degree = torch.zeros(n, dtype=affinity.dtype).index_add_(0, row, value)
    indices = torch.stack([row, col])
    return torch.sparse_coo_tensor(
        indices, value / degree[row], (n, n), check_invariants=True
    ).coalesce()


def random_walk(cam: torch.Tensor, transition: torch.Tensor, steps: int) -> torch.Tensor:
    """Propagate maps (C, H, W) by ``steps`` walk steps: x <- T x, for each map at once."""
    channels, height, width = cam.shape
    x = cam.reshape(channels, height * width).T
    for _ in range(steps):
        x = transition @ x
    return x.T.reshape(channels, height, width)
