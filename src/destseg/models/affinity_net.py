"""AffinityNet (Ahn and Kwak, CVPR 2018): features whose distances give pixel-pair affinities.

The encoder's four stages are tapped (low levels see edges and colour, high levels see
objects), each projected by a 1x1 convolution and resized to one grid at ``feature_stride``
(4 or 8) of the input; a last 1x1 convolution mixes them into the feature map f. The affinity
of pixels i and j is ``exp(-mean |f_i - f_j|)`` for every pair within ``radius``
(:func:`destseg.affinity.pairs.pair_affinity`), the quantity the random walk needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from destseg.affinity.pairs import pair_affinity
from destseg.models.backbone import build_encoder

FEATURE_STRIDES = (4, 8)
TAP_CHANNELS = (32, 64, 128, 128)  # per encoder stage, as AffinityNet widens with depth


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
        return F.elu(self.mix(torch.cat(taps, 1)))

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
