import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT
from torchvision import models

from destseg.models.affinity_net import AffinityNet
from destseg.models.backbone import build_encoder, build_resnet, set_output_stride
from destseg.models.classifier import Classifier
from destseg.models.configs import feature_size
from destseg.models.model_file import build_model, load_model, save_model
from destseg.models.segmenter import Segmenter


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_encoder_output_stride(name, stride):
    encoder = build_encoder(name, pretrained=False, output_stride=stride).eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, 64, 96))
    assert out.shape[-2:] == (64 // stride, 96 // stride)
    assert out.shape[1] == encoder.out_channels


@pytest.mark.parametrize(
    ("stride", "dilate"), [(16, [False, False, True]), (8, [False, True, True])]
)
def test_dilation_surgery_equals_torchvision_for_bottlenecks(stride, dilate):
    torch.manual_seed(0)
    reference = models.resnet50(replace_stride_with_dilation=dilate).eval()
    ours = set_output_stride(build_resnet("resnet50", pretrained=False), stride).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
    for a, b in zip(ours.modules(), reference.modules(), strict=True):
        if isinstance(a, torch.nn.Conv2d):
            assert (a.stride, a.dilation, a.padding) == (b.stride, b.dilation, b.padding)


def test_unknown_backbone_and_stride_are_errors():
    with pytest.raises(ValueError, match="resnet17"):
        build_resnet("resnet17", pretrained=False)
    with pytest.raises(ValueError, match="output_stride"):
        set_output_stride(build_resnet("resnet18", pretrained=False), 4)


def test_segmenter_logits_at_input_size():
    model = Segmenter("resnet18", num_classes=5, pretrained=False, output_stride=16).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 80)).shape == (2, 5, 48, 80)


@pytest.mark.bad_input
def test_model_file_roundtrip_and_errors(tmp_path):
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    model = build_model(Classifier, config)
    save_model(tmp_path / "m.pt", model, config)
    loaded, stored = load_model(tmp_path / "m.pt", Classifier, torch.device("cpu"))
    assert stored == config and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="expected a segmenter"):
        load_model(tmp_path / "m.pt", Segmenter, torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        load_model(tmp_path / "missing.pt", Classifier, torch.device("cpu"))
    torch.save(
        {
            "kind": "classifier",
            "config": {**config, "num_classes": 4},
            "state_dict": model.state_dict(),
        },
        tmp_path / "bad.pt",
    )
    with pytest.raises(ValueError, match="weights do not fit"):
        load_model(tmp_path / "bad.pt", Classifier, torch.device("cpu"))


@pytest.mark.bad_input
def test_a_model_for_another_number_of_classes_is_refused_before_it_is_built(tmp_path):
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    save_model(tmp_path / "m.pt", build_model(Classifier, config), config)
    _, stored = load_model(tmp_path / "m.pt", Classifier, torch.device("cpu"), num_classes=3)
    assert stored == config
    expected = r"m\.pt: the model predicts 3 classes, the dataset needs 20"
    with pytest.raises(ValueError, match=expected):
        load_model(tmp_path / "m.pt", Classifier, torch.device("cpu"), num_classes=20)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.bad_input
def test_model_files_that_could_run_code_or_are_damaged_are_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    torch.save(
        {"kind": "classifier", "config": _Payload(marker), "state_dict": {}}, tmp_path / "x.pt"
    )
    with pytest.raises(ValueError, match=r"x\.pt: not a readable torch file .*could run code"):
        load_model(tmp_path / "x.pt", Classifier, torch.device("cpu"))
    assert not marker.exists()
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    save_model(tmp_path / "m.pt", build_model(Classifier, config), config)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"m\.pt: not a readable torch file"):
        load_model(tmp_path / "m.pt", Classifier, torch.device("cpu"))
    torch.save({"kind": "classifier", "config": {"depth": 5}, "state_dict": {}}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"c\.pt: not a valid classifier configuration"):
        load_model(tmp_path / "c.pt", Classifier, torch.device("cpu"))


@pytest.mark.parametrize("side", [37, 64, 97, 128])
@pytest.mark.parametrize("stride", [8, 16, 32])
@pytest.mark.parametrize("stage", [3, 4])
def test_feature_size_of_the_params_check_matches_the_encoder(side, stride, stage):
    encoder = build_encoder("resnet18", False, stride).eval()
    with torch.no_grad():
        outputs = encoder.stage_outputs(torch.zeros(1, 3, side, side + 5))
    assert outputs[stage - 1].shape[-2:] == (
        feature_size(side, stride, stage),
        feature_size(side + 5, stride, stage),
    )


def test_params_schema_knows_the_same_choices_as_the_library():
    """The params schema spells out the library's choices so that reading params needs no torch."""
    from typing import get_args

    from destseg.affinity.walk import NORMALIZATIONS
    from destseg.models.freezing import FREEZE_THROUGH
    from destseg.refine.crf import UNARIES
    from stages.params.aff_labels import AffLabelsCrfParams
    from stages.params.propagate import PropagateParams
    from stages.params.train import TrainParams

    fields = {
        "freeze_through": (TrainParams, FREEZE_THROUGH),
        "unary": (AffLabelsCrfParams, UNARIES),
        "normalize": (PropagateParams, NORMALIZATIONS),
    }
    for name, (schema, choices) in fields.items():
        assert get_args(schema.model_fields[name].annotation) == choices, name


def test_params_schema_knows_the_same_backbones():
    from typing import get_args

    from destseg.models.backbone import BACKBONES
    from stages.params.train import Backbone

    assert get_args(Backbone) == BACKBONES


def test_resnet10_is_torchvisions_resnet_with_one_block_per_stage():
    from destseg.models.backbone import UNTRAINED, build_encoder
    from stages.params.train import UNTRAINED_BACKBONES

    assert tuple(UNTRAINED) == UNTRAINED_BACKBONES
    encoder = build_encoder("resnet10", False, 16)
    assert [len(stage) for stage in encoder.stages] == [1, 1, 1, 1]
    assert encoder(torch.zeros(1, 3, 96, 96)).shape == (1, 512, 6, 6)
    with pytest.raises(ValueError, match="no ImageNet weights for resnet10"):
        build_encoder("resnet10", True, 16)


@pytest.mark.bad_input
def test_params_refuse_imagenet_weights_for_resnet10():
    from pydantic import ValidationError

    from stages.params.cls import ClsParams

    params = yaml.safe_load((ROOT / "params.yaml").read_text())["cls"]
    with pytest.raises(ValidationError, match="no ImageNet weights for resnet10"):
        ClsParams.model_validate({**params, "backbone": "resnet10", "pretrained": True})


@pytest.mark.bad_input
def test_pretrained_weights_offline_is_a_clear_error(monkeypatch):
    from urllib.error import URLError

    from torchvision.models import _api

    from destseg.models.backbone import PretrainedWeightsError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(_api, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsError, match=r"resnet18.*checkpoints.*pretrained: false"):
        build_resnet("resnet18", pretrained=True)


def test_pretrained_weights_load_from_a_placed_file(monkeypatch, tmp_path):
    """Offline, the file the error message names is what pretrained: true loads."""
    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = build_resnet("resnet18", pretrained=False)
    (tmp_path / "checkpoints").mkdir()
    filename = ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1]
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / filename)
    loaded = build_resnet("resnet18", pretrained=True)
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    assert torch.equal(loaded.fc.bias, reference.fc.bias)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("network", "config", "expected"),
    [
        (
            Classifier,
            {
                "backbone": "resnet10",
                "num_classes": 3,
                "output_stride": 16,
                "mdc": {"grid": 400, "position": 4, "shared": True, "activation": True},
            },
            "not a valid classifier configuration (mdc.grid: Input should be less than or equal",
        ),
        (
            AffinityNet,
            {"backbone": "resnet10", "output_stride": 8, "feature_stride": 4, "radius": 100000},
            "not a valid affinity configuration (radius: Input should be less than or equal",
        ),
        (
            Segmenter,
            {"backbone": "resnet10", "num_classes": 2_000_000_000, "output_stride": 16},
            "not a valid segmenter configuration (num_classes: Input should be less than",
        ),
        (
            Segmenter,
            {"backbone": "resnet10", "num_classes": 4, "output_stride": 16, "extra": 1},
            "not a valid segmenter configuration (extra: Extra inputs are not permitted",
        ),
    ],
    ids=["mdc-grid", "radius", "classes", "unknown-key"],
)
def test_a_model_files_config_is_validated_before_the_network_is_built(
    tmp_path, network, config, expected
):
    """A config that would take gigabytes is refused from the file, never built."""
    torch.save({"kind": network.KIND, "config": config, "state_dict": {}}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_model(tmp_path / "m.pt", network, torch.device("cpu"))
