"""Puzzle-CAM (Jo & Yu, ICIP 2021): the whole image's class maps asked to match those of its
tiles, each tile classified on its own and the tiles' maps stitched back.

A positive control for destruction learning: like the MDC it processes parts of the input apart
and joins them, and unlike the MDC it adds a loss asking the whole map to agree with the
joined one, which pushes the classifier to find in every tile, alone, the evidence it finds in
the whole image. Learned from the reference code (OFRIN/PuzzleCAM: ``core/puzzle_utils.py``
``tile_features`` / ``merge_features``, ``train_classification_with_puzzle.py``), not copied:

* the image is cut into ``tiles`` x ``tiles`` equal pieces (the reference's ``num_pieces`` 4 is
  2 x 2), each piece goes through the same network, and the pieces' raw class maps (before any
  ReLU or normalisation: its ``--level feature``) are laid out again where they were cut;
* loss = the whole image's multi-label loss + the stitched maps' multi-label loss (on their
  spatial mean, its ``p_class_loss``) + alpha x the reconstruction loss: the mean over every
  (image, class, position) of |whole - stitched| with the classes absent from the image set to
  zero (its ``L1_Loss`` with ``--re_loss_option masking``: absent classes count in the mean);
* alpha grows linearly from 0 to its maximum over the first ``ramp`` of the training steps
  (``alpha = min(alpha_max * step / (steps * ramp), alpha_max)``; the ResNet runs use 4 and 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cut_tiles(images: torch.Tensor, tiles: int) -> torch.Tensor:
    """(N, C, H, W) -> (tiles^2 * N, C, H / tiles, W / tiles): tile (r, c) of every image as
    the block r * tiles + c of the batch, row by row (the reference's order). ``tiles`` must
    divide both sides: the tiles are equal, so their maps stitch into the whole image's size."""
    n, channels, height, width = images.shape
    if height % tiles or width % tiles:
        raise ValueError(f"a {height}x{width} input cannot be cut into {tiles}^2 equal tiles")
    h, w = height // tiles, width // tiles
    blocks = images.reshape(n, channels, tiles, h, tiles, w).permute(2, 4, 0, 1, 3, 5)
    return blocks.reshape(tiles * tiles * n, channels, h, w)


def stitch_tiles(maps: torch.Tensor, tiles: int) -> torch.Tensor:
    """The inverse of :func:`cut_tiles`: (tiles^2 * N, C, h, w) -> (N, C, tiles * h,
    tiles * w), every tile's map put back where its tile was cut."""
    count, channels, h, w = maps.shape
    n = count // (tiles * tiles)
    blocks = maps.reshape(tiles, tiles, n, channels, h, w).permute(2, 3, 0, 4, 1, 5)
    return blocks.reshape(n, channels, tiles * h, tiles * w)


def reconstruction_loss(cam: torch.Tensor, stitched: torch.Tensor, target: torch.Tensor):
    """Mean absolute difference between the whole image's raw class maps and the stitched ones
    (N, K, h, w), over the classes present in ``target`` (N, K): absent classes are zeroed but
    counted in the mean, as the reference's masking does."""
    mask = target[:, :, None, None]
    return ((cam - stitched).abs() * mask).mean()


def alpha_at(progress: float, alpha: float, ramp: float) -> float:
    """The weight of the reconstruction loss at ``progress`` (the share of the training steps
    already taken, step / steps): linear from 0 to ``alpha`` over the first ``ramp`` of
    training, then ``alpha``; ``ramp`` 0 means ``alpha`` from the first step."""
    if ramp == 0:
        return alpha
    return min(alpha * progress / ramp, alpha)


def puzzle_loss(
    cam: torch.Tensor, stitched: torch.Tensor, target: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Puzzle-CAM's two terms beside the whole image's multi-label loss: the stitched maps'
    multi-label loss (on their spatial mean) plus ``alpha`` x :func:`reconstruction_loss`; and
    both terms unweighted, to log. In float32 (autocast leaves bf16 maps otherwise)."""
    cam, stitched = cam.float(), stitched.float()
    tiled = F.multilabel_soft_margin_loss(stitched.mean(dim=(-2, -1)), target)
    reconstruction = reconstruction_loss(cam, stitched, target)
    terms = {"loss_tiled": tiled.detach(), "loss_reconstruction": reconstruction.detach()}
    return tiled + alpha * reconstruction, terms
