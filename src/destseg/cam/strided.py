"""Images and maps between pixel grids and the strided grids of a network, aligned as IRN does.

A network with stride-2 layers turns an H x W image into ceil(H / stride) x ceil(W / stride)
cells, the last ones partly over padding. Bringing its maps back to H x W by a straight resize
squeezes the cells and shifts the map towards the top-left by up to a cell's width; IRN
upsamples to stride x cells and crops, which keeps every cell over the pixels it saw. Shared by
the CAMs (make_cam) and the random walk (propagate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rescale_image(image: torch.Tensor, scale: float) -> torch.Tensor:
    """A normalised image (3, H, W), or a batch of them (N, 3, H, W), resized by ``scale`` the
    way IRN resizes its inputs: bicubic, antialiased when it shrinks (IRN calls PIL's resize,
    which always is), sides rounded."""
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return image
    batch = image if image.dim() == 4 else image[None]
    out = F.interpolate(batch, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out if image.dim() == 4 else out[0]


def upsample_strided(maps: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Maps (N, k, h, w) of a network at ``stride`` brought to ``size`` (H, W) as IRN does:
    upsampled to stride x ceil(H / stride) by stride x ceil(W / stride), then cropped to H x W.

    A network with stride-2 layers gives ceil(H / stride) cells, the last one partly over
    padding; resizing the cells straight to H x W would squeeze them and shift the map towards
    the top-left by up to a cell's width (about 12 px at the bottom of a 500 px side at stride
    16), while this keeps every cell over the pixels it saw.
    """
    height, width = size
    padded = (stride * math.ceil(height / stride), stride * math.ceil(width / stride))
    up = F.interpolate(maps, size=padded, mode="bilinear", align_corners=False)
    return up[..., :height, :width]


def downsample_strided(maps: torch.Tensor, stride: int) -> torch.Tensor:
    """Maps (N, k, H, W) averaged over the stride x stride cells of a network's grid, the last
    cells over the pixels that remain: (N, k, ceil(H / stride), ceil(W / stride))."""
    return F.avg_pool2d(maps, stride, ceil_mode=True)
