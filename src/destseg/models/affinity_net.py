"""AffinityNet (Ahn and Kwak, CVPR 2018): features whose distances give pixel-pair affinities.

The encoder's four stages are tapped (low levels see edges and colour, high levels see
objects), each projected by a 1x1 convolution and resized to one grid at ``feature_stride``
(4 or 8) of the input; a last 1x1 convolution mixes them into the feature map f. The affinity
of pixels i and j is ``exp(-mean |f_i - f_j|)`` for every pair within ``radius``
(:func:`pair_affinity`), the quantity the random walk needs.

Pairs are indexed by an offset (dy, dx) within a radius, each unordered pair once (the offsets
cover half the disc), and by the first pixel of the pair: an array (..., P, H, W) holds for
offset p the pair ((y, x), (y + dy_p, x + dx_p)). The affinity labels
(:mod:`destseg.affinity.pairs`) and the random walk's transition matrix
(:mod:`destseg.affinity.walk`) use this indexing too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from destseg.models.backbone import build_encoder

FEATURE_STRIDES = (4, 8)
TAP_CHANNELS = (32, 64, 128, 128)  # per encoder stage, as AffinityNet widens with depth


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


class AffinityNet(nn.Module):
    KIND = "affinity"  # what model files call it

    def __init__(
        self,
        backbone: str,
        pretrained: bool,
        output_stride: int,
        feature_stride: int,
        radius: int,
        feature_dim: int = 256,
    ):
        super().__init__()
        if feature_stride not in FEATURE_STRIDES:
            raise ValueError(f"feature_stride must be 4 or 8, got {feature_stride}")
        self.encoder = build_encoder(backbone, pretrained, output_stride)
        self.feature_stride = feature_stride
        self.radius = radius
        self.taps = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.GroupNorm(4, c_out), nn.ReLU())
            for c_in, c_out in zip(self.encoder.stage_channels, TAP_CHANNELS, strict=True)
        )
        self.mix = nn.Conv2d(sum(TAP_CHANNELS), feature_dim, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map (N, D, h, w) on the grid of encoder stage 1 (stride 4) or 2 (8)."""
        stages = self.encoder.stage_outputs(x)
        size = stages[0 if self.feature_stride == 4 else 1].shape[-2:]
        taps = [
            F.interpolate(tap(stage), size=size, mode="bilinear", align_corners=False)
            for tap, stage in zip(self.taps, stages, strict=True)
        ]
        # The mixing layer and its ELU in float32 whatever the caller's autocast: their output
        # feeds the float32 affinity, and rounding it to bf16 first would undo that.
        with torch.autocast(x.device.type, enabled=False):
            return F.elu(self.mix(torch.cat(taps, 1).float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Affinities (N, P, h, w) in (0, 1] of the pairs of :func:`neighbour_offsets`, computed
        in float32 under autocast too: the walk raises them to the power beta."""
        return pair_affinity(self.features(x).float(), self.radius)

    def backbone_parts(self) -> list[nn.Module]:
        """The encoder's stem and four stages, input first (for freezing)."""
        return self.encoder.backbone_parts()

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """The encoder at ``lr``; the taps and the mixing layer at ``lr * head_lr_mult``."""
        head = list(self.taps.parameters()) + list(self.mix.parameters())
        return [
            {"params": list(self.encoder.parameters()), "lr": lr, "weight_decay": weight_decay},
            {"params": head, "lr": lr * head_lr_mult, "weight_decay": weight_decay},
        ]
