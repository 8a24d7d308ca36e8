"""torchvision ResNets as dense encoders with a chosen output stride.

torchvision's ``replace_stride_with_dilation`` only works for Bottleneck ResNets (50/101); the
demo needs ResNet-18/34 too. :func:`set_output_stride` does the same surgery for both block
types: the first block of a stage loses its stride, the later blocks of that stage get dilated
3x3 convolutions, exactly as torchvision builds a dilated Bottleneck stage.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, ResNet

BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101")
# Built from torchvision's ResNet class with one BasicBlock per stage: half ResNet-18's layers,
# half its cost and a smaller receptive field, for the CPU demo. torchvision has no ImageNet
# weights for it.
UNTRAINED = {"resnet10": [1, 1, 1, 1]}


class PretrainedWeightsError(FileNotFoundError):
    """The ImageNet weights are not on this machine and could not be downloaded."""


def build_resnet(name: str, pretrained: bool) -> ResNet:
    """A torchvision ResNet; with ``pretrained`` its default ImageNet weights (weights API)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name in UNTRAINED:
        if pretrained:
            raise ValueError(f"torchvision has no ImageNet weights for {name}")
        return ResNet(BasicBlock, UNTRAINED[name])
    weights = models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        return models.get_model(name, weights=weights)
    except OSError as err:  # URLError and friends, when the weights cannot be fetched
        raise PretrainedWeightsError(
            f"could not load ImageNet weights for {name} ({weights.url}): {err}. Offline, put the "
            f"file in {torch.hub.get_dir()}/checkpoints/ or set pretrained: false"
        ) from err


def _dilate_stage(stage: nn.Sequential, first_dilation: int, dilation: int) -> None:
    """Remove the stride of a ResNet stage; dilate the 3x3 convolutions of its first block by
    ``first_dilation`` (the dilation of the stage before) and of its later blocks by ``dilation``.
    """
    for index, block in enumerate(stage):
        rate = first_dilation if index == 0 else dilation
        for module in block.modules():
            if not isinstance(module, nn.Conv2d):
                continue
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (rate, rate)
                module.padding = (rate, rate)


def set_output_stride(resnet: ResNet, output_stride: int) -> ResNet:
    """Make a fresh torchvision ``resnet`` (stride 32) produce features at stride 8, 16 or 32."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    if output_stride == 16:
        _dilate_stage(resnet.layer4, first_dilation=1, dilation=2)
    elif output_stride == 8:
        _dilate_stage(resnet.layer3, first_dilation=1, dilation=2)
        _dilate_stage(resnet.layer4, first_dilation=2, dilation=4)
    return resnet


class Encoder(nn.Module):
    """ResNet stem and its four stages; returns the last feature map."""

    def __init__(self, resnet: ResNet, output_stride: int):
        super().__init__()
        self.output_stride = output_stride
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        # channels after each stage: the last BatchNorm of the stage's last block
        self.stage_channels = [
            getattr(stage[-1], "bn3", stage[-1].bn2).num_features for stage in self.stages
        ]
        self.out_channels = self.stage_channels[-1]

    def backbone_parts(self) -> list[nn.Module]:
        """The stem and the four stages, input first (see :mod:`destseg.models.freezing`)."""
        return [self.stem, *self.stages]

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps after each of the four stages (mid-level modules tap into them)."""
        outputs = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage_outputs(x)[-1]


def build_encoder(name: str, pretrained: bool, output_stride: int) -> Encoder:
    return Encoder(set_output_stride(build_resnet(name, pretrained), output_stride), output_stride)
