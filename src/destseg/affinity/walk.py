"""CAM propagation by a random walk over pixel-pair affinities (AffinityNet, IRN).

Affinities (P, H, W) follow the pair indexing of :mod:`destseg.affinity.pairs`.

The transition matrix is sparse (N x N with N = H * W, about P nonzeros per row), so memory grows
with the number of pixels times the neighbourhood, never with N squared as a dense matrix
(AffinityNet's implementation) would on VOC-size maps.
"""

from __future__ import annotations

import warnings

import torch

from destseg.cam.normalize import EPS, normalize_per_class
from destseg.cam.strided import downsample_strided, upsample_strided
from destseg.models.affinity_net import neighbour_offsets


def transition_matrix(affinity: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """Row-stochastic sparse (N, N) matrix (CSR) from affinities (P, H, W) in [0, 1].

    Each pair gets weight ``affinity ** beta`` in both directions (beta > 1 sharpens: weak
    affinities fade first) and every pixel a self-loop of weight 1; rows are then normalised
    to sum to one, so one walk step replaces a value by a weighted mean over its neighbourhood.
    The matrix lives on the device of ``affinity``, so the walk runs on the GPU when there is one.
    """
    offsets = neighbour_offsets(radius)
    num_offsets, height, width = affinity.shape
    if num_offsets != len(offsets):
        raise ValueError(f"affinity has {num_offsets} offsets, radius {radius} has {len(offsets)}")
    device = affinity.device
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
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
    diagonal = torch.arange(n, device=device)
    rows.append(diagonal)
    cols.append(diagonal)
    values.append(torch.ones(n, dtype=affinity.dtype, device=device))
    row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
    degree = torch.zeros(n, dtype=affinity.dtype, device=device).index_add_(0, row, value)
    indices = torch.stack([row, col])
    matrix = torch.sparse_coo_tensor(indices, value / degree[row], (n, n), check_invariants=True)
    with warnings.catch_warnings():  # "CSR support is in beta": stable for this use since 2.0
        warnings.simplefilter("ignore", UserWarning)
        # CSR: one walk step (sparse x dense) runs 14-30x faster than with COO on these grids
        return matrix.coalesce().to_sparse_csr()


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
