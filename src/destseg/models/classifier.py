"""The multi-label classifier whose class activation maps seed the pseudo-masks (IRN style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from destseg.models.backbone import build_encoder


class Classifier(nn.Module):
    """Encoder, global average pooling and a bias-free 1x1 classifier.

    Keeping the classifier a bias-free linear map on pooled features is what makes the CAM
    exact: the class score is the spatial mean of the CAM, ``score_c = mean(w_c . F)``.
    """

    def __init__(self, backbone: str, num_classes: int, pretrained: bool, output_stride: int):
        super().__init__()
        self.encoder = build_encoder(backbone, pretrained, output_stride)
        self.classifier = nn.Conv2d(self.encoder.out_channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, K)."""
        features = self.encoder(x)
        pooled = F.adaptive_avg_pool2d(features, 1)
        return self.classifier(pooled).flatten(1)

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps (N, K, h, w) at the encoder's resolution, before ReLU."""
        return self.classifier(self.encoder(x))

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """The encoder at ``lr`` and the classifier at ``lr * head_lr_mult`` (10x in IRN)."""
        return [
            {"params": list(self.encoder.parameters()), "lr": lr, "weight_decay": weight_decay},
            {
                "params": list(self.classifier.parameters()),
                "lr": lr * head_lr_mult,
                "weight_decay": weight_decay,
            },
        ]
