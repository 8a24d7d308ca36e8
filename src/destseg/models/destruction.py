"""Destruction learning (Li et al. 2023): destroy global structure so the classifier must find
class evidence in scattered local parts, and its CAM covers more of each object.

* :func:`region_confusion` is the Low-Level Destruction Module (LDM): the image is cut into an
  N x N grid and the cells are shuffled with the neighbourhood-limited permutation of DCL's
  region confusion mechanism (Chen et al., CVPR 2019), first along every row of cells, then along
  every column, so that no cell moves 2k places or more along either axis.
* :class:`PatchConv` is the Mid-Level Distribution-and-Collection Module (MDC): the feature map is
  sliced into g x g patches, each patch is convolved on its own with zero padding at its borders
  (nothing crosses from one patch to another), and the results are spliced back.
"""

from __future__ import annotations

import torch
from torch import nn


def neighbourhood_permutation(n: int, k: int, generator: torch.Generator | None = None):
    """A permutation of ``range(n)`` in which every element moves fewer than ``2 * k`` places.

    DCL's rule: q_i = i + r_i with r_i ~ U(-k, k), and the new order sorts q. Element i can only
    be overtaken by elements j with |i - j| < 2k, hence the bound. ``k = 0`` is the identity.
    """
    offsets = (torch.rand(n, generator=generator) * 2 - 1) * k
    return torch.argsort(torch.arange(n) + offsets, stable=True)


def _bounds(size: int, cells: int) -> list[int]:
    """Patch borders that cut ``size`` pixels into ``cells`` parts differing by at most one."""
    return [round(i * size / cells) for i in range(cells + 1)]


def _segment_index(bounds: list[int], order: torch.Tensor) -> torch.Tensor:
    """Pixel index along one axis that lays the segments out in ``order``."""
    return torch.cat([torch.arange(bounds[c], bounds[c + 1]) for c in order.tolist()])


def region_confusion(
    image: torch.Tensor, grid: int, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shuffle the cells of one image (C, H, W) within their neighbourhood (the LDM).

    The cells are H // grid by W // grid pixels, all the same size, so that every cell stays
    whole through both passes: pass one permutes, in every band of rows, the cells of that band;
    pass two permutes, in every band of columns, the cells of that band (DCL's swap). When
    ``grid`` does not divide a side (512 px, grid 7: 73 px cells), the remainder (1 px there) is
    a strip along the bottom and right edges that stays in place; cells of unequal sizes would
    instead leave slivers of one cell inside another after the second pass. The result is always
    a permutation of the pixels.
    """
    _, height, width = image.shape
    cell_h, cell_w = height // grid, width // grid
    if cell_h == 0 or cell_w == 0:
        raise ValueError(f"a {height}x{width} image cannot be cut into {grid}^2 cells")
    rows = [i * cell_h for i in range(grid + 1)]
    cols = [i * cell_w for i in range(grid + 1)]
    out = image.clone()
    for r in range(grid):
        index = _segment_index(cols, neighbourhood_permutation(grid, k, generator))
        out[:, rows[r] : rows[r + 1], : cols[-1]] = image[:, rows[r] : rows[r + 1]][
            :, :, index.to(image.device)
        ]
    result = out.clone()
    for c in range(grid):
        index = _segment_index(rows, neighbourhood_permutation(grid, k, generator))
        result[:, : rows[-1], cols[c] : cols[c + 1]] = out[
            :, index.to(image.device), cols[c] : cols[c + 1]
        ]
    return result


def destruct_batch(
    images: torch.Tensor,
    grid: int,
    k: int,
    probability: float,
    generator: torch.Generator | None = None,
    seeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply :func:`region_confusion` to each image of a batch with ``probability``.

    The draws come from ``generator`` (torch's global one when None), or, with ``seeds`` (one
    per image), from a generator per image seeded with its seed: then an image is shuffled the
    same way whatever batch it is in, which keeps training with several processes or
    micro-batches equal to training with one.
    """
    if seeds is not None and len(seeds) != len(images):
        raise ValueError(f"{len(seeds)} seeds for {len(images)} images")
    out = images.clone()
    seed_list = seeds.tolist() if seeds is not None else None  # one read from the device
    for i in range(images.shape[0]):
        if seed_list is not None:
            generator = torch.Generator().manual_seed(int(seed_list[i]))
        if torch.rand(1, generator=generator).item() < probability:
            out[i] = region_confusion(images[i], grid, k, generator)
    return out


class PatchConv(nn.Module):
    """The MDC: a 3x3 stride-1 convolution run on each of g x g patches of a feature map apart.

    Each patch is zero-padded at its own borders, so an output pixel only sees its own patch.
    ``shared`` uses one convolution for all patches; otherwise every patch position has its own.
    A BatchNorm and, with ``activation``, a ReLU follow. Patches differ by at most one pixel when
    g does not divide the map size.
    """

    def __init__(self, channels: int, grid: int, shared: bool = True, activation: bool = True):
        super().__init__()
        self.grid = grid
        count = 1 if shared else grid * grid
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(count)
        )
        self.norm = nn.BatchNorm2d(channels)
        self.activation = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height < self.grid or width < self.grid:
            raise ValueError(
                f"a {height}x{width} feature map cannot be cut into {self.grid}^2 patches"
            )
        rows, cols = _bounds(height, self.grid), _bounds(width, self.grid)
        out = torch.empty(
            (x.shape[0], self.convs[0].out_channels, height, width), dtype=x.dtype, device=x.device
        )
        for r in range(self.grid):
            for c in range(self.grid):
                conv = self.convs[0 if len(self.convs) == 1 else r * self.grid + c]
                patch = x[:, :, rows[r] : rows[r + 1], cols[c] : cols[c + 1]]
                out[:, :, rows[r] : rows[r + 1], cols[c] : cols[c + 1]] = conv(patch)
        return self.activation(self.norm(out))
