"""Frozen batch statistics and frozen early stages (IRN's FixedBatchNorm and detach)."""

import pytest
import torch
import yaml
from conftest import ROOT
from torch import nn

from destseg.models.affinity_net import AffinityNet
from destseg.models.classifier import Classifier
from destseg.models.freezing import FixedBatchNorm2d, fix_batch_norm, freeze_backbone
from destseg.models.model_file import build_model
from destseg.models.segmenter import Segmenter
from stages.params.cls import ClsParams


def _trained_bn() -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(3)
    bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    return bn


def test_fixed_batch_norm_normalises_with_running_statistics_in_training_mode():
    bn = _trained_bn()
    x = torch.randn(8, 3, 5, 5) * 3 + 7  # batch statistics far from the running ones
    expected = bn.eval()(x)
    assert fix_batch_norm(nn.Sequential(bn)) == 1 and isinstance(bn, FixedBatchNorm2d)
    before = bn.running_mean.clone()
    out = bn.train()(x)
    torch.testing.assert_close(out, expected)
    assert torch.equal(bn.running_mean, before)  # the statistics never move
    out.sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None  # the affine part learns


@pytest.mark.parametrize("network", [Classifier, Segmenter, AffinityNet], ids=lambda n: n.KIND)
def test_freezing_through_layer2_leaves_gradients_to_layer3_and_after(network):
    config = {
        "classifier": {"backbone": "resnet18", "num_classes": 3, "output_stride": 16},
        "segmenter": {"backbone": "resnet18", "num_classes": 4, "output_stride": 16},
        "affinity": {"backbone": "resnet18", "output_stride": 16, "feature_stride": 8, "radius": 2},
    }[network.KIND]
    model = build_model(network, config)
    parts = model.backbone_parts()
    freeze_backbone(parts, freeze_bn=True, freeze_through="layer2")
    model.train()
    model(torch.randn(2, 3, 64, 64)).float().mean().backward()
    for index, part in enumerate(parts):
        grads = [p.grad is not None for p in part.parameters()]
        assert not any(grads) if index <= 2 else all(grads), f"part {index}"
        assert all(type(m) is not nn.BatchNorm2d for m in part.modules())
    state = model.state_dict()  # model files stay those of plain batch norm
    build_model(network, config).load_state_dict(state)


def test_nothing_is_frozen_by_default():
    model = build_model(
        Classifier, {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    )
    freeze_backbone(model.backbone_parts(), freeze_bn=False, freeze_through="none")
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, FixedBatchNorm2d) for m in model.modules())


@pytest.mark.bad_input
@pytest.mark.parametrize("option", [{"freeze_bn": True}, {"freeze_through": "stem"}])
def test_freezing_needs_pretrained_weights(option):
    cls = yaml.safe_load((ROOT / "params.yaml").read_text())["cls"] | option
    with pytest.raises(ValueError, match="need pretrained: true"):
        ClsParams.model_validate(cls)
