"""DeepLabV3 segmenter: torchvision's DeepLabV3 class and ASPP head on our ResNet encoder.

torchvision's ``deeplabv3_resnet50`` builder fixes output stride 8 and offers no ResNet-18/34;
building the same ``DeepLabV3`` module around the encoder lets the CPU demo use ResNet-18 and
the real configuration use ResNet-50/101 at the output stride of its choice, with ImageNet
backbone weights from the weights API.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from destseg.models.backbone import build_resnet, set_output_stride


class Segmenter(nn.Module):
    """DeepLabV3 returning logits (N, C, H, W) at the input resolution."""

    KIND = "segmenter"  # what model files call it

    def __init__(self, backbone: str, num_classes: int, pretrained: bool, output_stride: int):
        super().__init__()
        resnet = set_output_stride(build_resnet(backbone, pretrained), output_stride)
        channels = resnet.fc.in_features
        body = IntermediateLayerGetter(resnet, return_layers={"layer4": "out"})
        self.net = DeepLabV3(body, DeepLabHead(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]

    def backbone_parts(self) -> list[nn.Module]:
        """The stem (conv1, bn1) and the four stages of the ResNet, input first."""
        body = self.net.backbone
        stem = nn.ModuleList([body.conv1, body.bn1])  # a view for iteration; owns nothing
        return [stem, body.layer1, body.layer2, body.layer3, body.layer4]

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """The backbone at ``lr`` and the ASPP head at ``lr * head_lr_mult``."""
        return [
            {
                "params": list(self.net.backbone.parameters()),
                "lr": lr,
                "weight_decay": weight_decay,
            },
            {
                "params": list(self.net.classifier.parameters()),
                "lr": lr * head_lr_mult,
                "weight_decay": weight_decay,
            },
        ]
