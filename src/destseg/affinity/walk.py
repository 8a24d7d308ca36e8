"""CAM propagation by a random walk over pixel-pair affinities (AffinityNet, IRN).

Affinities (P, H, W) follow the pair indexing of :mod:`destseg.affinity.pairs`.

The transition matrix is sparse (N x N with N = H * W, about P nonzeros per row), so memory grows
with the number of pixels times the neighbourhood, never with N squared as a dense matrix
(AffinityNet's implementation) would on VOC-size maps.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch

from destseg.cam.normalize import EPS, normalize_per_class
from destseg.cam.strided import downsample_strided, upsample_strided
from destseg.models.affinity_net import neighbour_offsets


@lru_cache(maxsize=32)  # about 10 MB each at COCO size (80 x 60, radius 5)
def _pair_structure(
    height: int, width: int, radius: int, device: torch.device
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a grid's transition matrix shares with every other of its size, computed once per
    (height, width, radius, device): per offset the flat indices of the pixels whose neighbour
    lies inside; the row of every entry (both directions of each pair, then the self-loops); and
    the CSR layout (row pointers, columns, and the order that sorts the entries into it). The
    entries are distinct (each pair once per direction), so sorting them is all that COO ->
    CSR conversion does, and caching it leaves the matrix bit for bit the same."""
    offsets = neighbour_offsets(radius)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    flat = ys * width + xs
    inside, rows, cols = [], [], []
    for dy, dx in offsets:
        mask = ((ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)).reshape(-1)
        where = mask.nonzero().squeeze(1)
        first = flat.reshape(-1)[where]
        second = first + dy * width + dx
        inside.append(where)
        rows += [first, second]
        cols += [second, first]
    n = height * width
    diagonal = torch.arange(n, device=device)
    row, col = torch.cat([*rows, diagonal]), torch.cat([*cols, diagonal])
    order = torch.argsort(row * n + col, stable=True)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    return inside, row, order, crow, col[order]


def transition_matrix(affinity: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """Row-stochastic sparse (N, N) matrix (CSR) from affinities (P, H, W) in [0, 1].

    Each pair gets weight ``affinity ** beta`` in both directions (beta > 1 sharpens: weak
    affinities fade first) and every pixel a self-loop of weight 1; rows are then normalised
    to sum to one, so one walk step replaces a value by a weighted mean over its neighbourhood.
    The matrix lives on the device of ``affinity``, so the walk runs on the GPU when there is one;
    its index structure is computed once per grid size (:func:`_pair_structure`), so an image
    costs only its values. CSR: one walk step (sparse x dense) runs 14-30x faster than with COO
    on these grids.
    """
    num_offsets, height, width = affinity.shape
    if num_offsets != len(neighbour_offsets(radius)):
        raise ValueError(
            f"affinity has {num_offsets} offsets, radius {radius} has "
            f"{len(neighbour_offsets(radius))}"
        )
    inside, row, order, crow, col = _pair_structure(height, width, radius, affinity.device)
    flat = affinity.reshape(num_offsets, -1)
    values = []
    for p, where in enumerate(inside):
        weight = flat[p][where].clamp(0, 1) ** beta
        values += [weight, weight]
    n = height * width
    values.append(torch.ones(n, dtype=affinity.dtype, device=affinity.device))
    value = torch.cat(values)
    degree = torch.zeros(n, dtype=affinity.dtype, device=affinity.device).index_add_(0, row, value)
    with warnings.catch_warnings():  # "CSR support is in beta": stable for this use since 2.0
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, (value / degree[row])[order], (n, n))


def random_walk(cam: torch.Tensor, transition: torch.Tensor, steps: int) -> torch.Tensor:
    """Propagate maps (C, H, W) by ``steps`` walk steps: x <- T x, for each map at once."""
    channels, height, width = cam.shape
    x = cam.reshape(channels, height * width).T
    for _ in range(steps):
        x = transition @ x
    return x.T.reshape(channels, height, width)


NORMALIZATIONS = ("global", "per_class")


def propagate_cam(
    cam: torch.Tensor,
    affinity: torch.Tensor,
    radius: int,
    beta: float,
    exp_times: int,
    stride: int,
    normalize: str = "global",
) -> torch.Tensor:
    """CAMs (k, H, W) at image size propagated by 2^``exp_times`` walk steps over the
    affinities (P, h, w) of the network's grid at ``stride`` (h = ceil(H / stride)).

    The CAMs are averaged over the grid's cells (the last ones partial, like the network's;
    the walk runs there, so memory grows with h * w, not H * W), walked, and brought back to
    the image size with each cell over its own pixels (:mod:`destseg.cam.strided`). Then
    ``normalize``: ``global`` divides by the largest value of any class (IRN's
    make_sem_seg_labels), so a class the walk diluted stays weak against the background
    threshold; ``per_class`` divides each class by its own maximum, like the CAMs. An image
    without classes passes through.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    if cam.shape[0] == 0:
        return cam
    height, width = cam.shape[-2:]
    small = downsample_strided(cam[None], stride)[0]
    if small.shape[-2:] != affinity.shape[-2:]:
        raise ValueError(
            f"a {height}x{width} CAM at stride {stride} gives a {tuple(small.shape[-2:])} grid, "
            f"the affinities are {tuple(affinity.shape[-2:])}"
        )
    walked = random_walk(small, transition_matrix(affinity, radius, beta), 2**exp_times)
    up = upsample_strided(walked[None], (height, width), stride)[0]
    if normalize == "global":
        return up / (up.max() + EPS)
    return normalize_per_class(up)
