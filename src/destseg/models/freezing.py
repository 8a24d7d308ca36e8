"""Frozen batch statistics and frozen early stages for ImageNet-pretrained backbones (IRN).

IRN's ResNet-50 normalises with its ImageNet statistics throughout training (``FixedBatchNorm``:
batch norm in inference mode, affine weights still learnt), never trains its stem (conv1, bn1),
and cuts the gradient after the second stage (``stage2(x).detach()``), so that only the last two
stages and the new layers learn. Here both are options of every training stage:
``freeze_bn`` and ``freeze_through`` (the last part of the backbone that gets no gradient).
With the LDM on, frozen statistics also keep the shuffled half of each batch from shifting the
statistics that the intact images are normalised with at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The parts of a ResNet backbone, input first; ``freeze_through`` names the last one frozen.
BACKBONE_PARTS = ("stem", "layer1", "layer2", "layer3", "layer4")
FREEZE_THROUGH = ("none", *BACKBONE_PARTS)


class FixedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always normalises with its running statistics (IRN's FixedBatchNorm).

    A subclass with the same parameters and buffers, so model files stay interchangeable with
    plain ``BatchNorm2d`` ones; weight and bias keep learning unless their part is frozen.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def fix_batch_norm(module: nn.Module) -> int:
    """Make every ``BatchNorm2d`` inside ``module`` a :class:`FixedBatchNorm2d`, in place (the
    subclass adds no state, so the objects, their parameters and every reference to them stay
    the same); return how many were changed."""
    count = 0
    for child in module.modules():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = FixedBatchNorm2d
            count += 1
    return count


def freeze_backbone(parts: Sequence[nn.Module], freeze_bn: bool, freeze_through: str) -> None:
    """Apply the two options to a backbone given as its parts (:data:`BACKBONE_PARTS` order):
    fixed batch statistics in all of them, and no gradient for the parts up to and including
    ``freeze_through`` (``none``: every part learns)."""
    if freeze_through not in FREEZE_THROUGH:
        raise ValueError(f"freeze_through must be one of {', '.join(FREEZE_THROUGH)}")
    if len(parts) != len(BACKBONE_PARTS):
        raise ValueError(f"expected the {len(BACKBONE_PARTS)} parts {BACKBONE_PARTS}")
    if freeze_bn:
        for part in parts:
            fix_batch_norm(part)
    for part in parts[: FREEZE_THROUGH.index(freeze_through)]:  # none: 0 parts, stem: 1, ...
        for parameter in part.parameters():
            parameter.requires_grad_(False)
