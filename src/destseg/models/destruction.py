"""Destruction learning (Li et al. 2023): destroy global structure so the classifier must find
class evidence in scattered local parts, and its CAM covers more of each object.

* :func:`destruct_batch` is the Low-Level Destruction Module (LDM): each image is cut into an
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


def cell_orders(grid: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The LDM's draws for one image, (2, grid, grid): for every band of rows the order of its
    cells (DCL's first pass), then for every band of columns (the second), each a
    :func:`neighbourhood_permutation`. Drawn in this order on the CPU, where a seeded
    generator lives, whatever device the image is on."""
    passes = [[neighbourhood_permutation(grid, k, generator) for _ in range(grid)] for _ in "rc"]
    return torch.stack([torch.stack(orders) for orders in passes])


def source_pixels(orders: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """For ``n`` images' cell orders (n, 2, grid, grid), the flat index (n, height * width) of
    the input pixel that each output pixel takes, computed on ``orders``' device.

    The cells are height // grid by width // grid pixels, all the same size, so that every cell
    stays whole through both passes: pass one lays out, in every band of rows, the cells of that
    band in its order; pass two, in every band of columns, the cells of that band. When ``grid``
    does not divide a side (512 px, grid 7: 73 px cells), the remainder (1 px there) is a strip
    along the bottom and right edges that stays in place; cells of unequal sizes would instead
    leave slivers of one cell inside another after the second pass. Both passes compose into
    one index, so a batch is shuffled by one gather on the device rather than by two slice
    copies per band of every image.
    """
    grid = orders.shape[-1]
    cell_h, cell_w = height // grid, width // grid
    if cell_h == 0 or cell_w == 0:
        raise ValueError(f"a {height}x{width} image cannot be cut into {grid}^2 cells")
    n, device = orders.shape[0], orders.device
    y = torch.arange(height, device=device)
    cell_y = (y // cell_h).clamp(max=grid - 1)
    # pass two: in column band c, output row y takes row src_y of pass one's output (n, grid, H)
    rows = orders[:, 1][:, :, cell_y] * cell_h + (y - cell_y * cell_h)
    src_y = torch.where(y < grid * cell_h, rows, y)
    # pass one at that row: its band's order says which cell column lands in column band c
    band = (src_y // cell_h).clamp(max=grid - 1)
    c = torch.arange(grid, device=device)[:, None]
    cols = orders[:, 0].flatten(1).gather(1, (band * grid + c).flatten(1)).view_as(src_y)
    src_cell = torch.where(src_y < grid * cell_h, cols, c)
    # where each (row, cell column) starts in the input, and the right strip, which stays put
    starts = torch.cat(
        [src_y * width + src_cell * cell_w, (y * width + grid * cell_w).expand(n, 1, -1)], 1
    )
    x = torch.arange(width, device=device)
    cell_x = (x // cell_w).clamp(max=grid)
    return (starts.transpose(1, 2)[:, :, cell_x] + (x - cell_x * cell_w)).flatten(1)


def destruct_batch(
    images: torch.Tensor,
    grid: int,
    k: int,
    probability: float,
    generator: torch.Generator | None = None,
    seeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shuffle the cells of each image of a batch (N, C, H, W) within their neighbourhood with
    ``probability`` (DCL's region confusion): the :func:`cell_orders` of each chosen image, laid
    out by :func:`source_pixels`; always a permutation of each image's pixels.

    The draws come from ``generator`` (torch's global one when None), or, with ``seeds`` (one
    per image), from a generator per image seeded with its seed: then an image is shuffled the
    same way whatever batch it is in, which keeps training with several processes or
    micro-batches equal to training with one. The draws stay on the CPU; the device gets the
    chosen images' cell orders in one copy and shuffles them in one gather.
    """
    if seeds is not None and len(seeds) != len(images):
        raise ValueError(f"{len(seeds)} seeds for {len(images)} images")
    seed_list = seeds.tolist() if seeds is not None else None  # one read from the device
    chosen, orders = [], []
    for i in range(images.shape[0]):
        if seed_list is not None:
            generator = torch.Generator().manual_seed(int(seed_list[i]))
        if torch.rand(1, generator=generator).item() < probability:
            chosen.append(i)
            orders.append(cell_orders(grid, k, generator))
    out = images.clone()
    if not chosen:
        return out
    n, (_, channels, height, width) = len(chosen), images.shape
    index = torch.tensor(chosen).to(images.device, non_blocking=True)
    pixels = source_pixels(torch.stack(orders).to(images.device, non_blocking=True), height, width)
    shuffled = images[index].flatten(2).gather(2, pixels[:, None].expand(n, channels, -1))
    out[index] = shuffled.view(n, channels, height, width)
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
