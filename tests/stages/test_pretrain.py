"""Stage pretrain and the encoder it hands to train_cls."""

import json

import pytest
import torch
from conftest import listed, write_params
from typer.testing import CliRunner

from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, load_encoder, load_model, save_model
from stages import pretrain, train_cls

runner = CliRunner()
# A corpus of four classes at 64 px, one epoch of a small crop: seconds
CORPUS = {
    "pretrain.synthetic.num_classes": 4,
    "pretrain.synthetic.image_size": 64,
    "pretrain.synthetic.train_images": 8,
    "pretrain.synthetic.val_images": 4,
    "pretrain.epochs": 1,
    "cls.crop_size": 48,
    "cls.batch_size": 4,
    "cls.backbone": "resnet18",
    "cls.ldm.enabled": False,
    "cls.mdc.enabled": False,
    "device": "cpu",
}


def _params(tmp_path, **overrides):
    return write_params(tmp_path, **{**CORPUS, **overrides})


def _pretrain(tmp_path, params):
    out, live = tmp_path / "pretrain", tmp_path / "live"
    args = ["--params", str(params), "--out", str(out), "--live-dir", str(live)]
    args += ["--checkpoint", str(tmp_path / "ck.pt")]
    return runner.invoke(pretrain.app, args), out, live


def test_off_it_leaves_its_folder_and_metrics_empty(tmp_path):
    result, out, live = _pretrain(tmp_path, _params(tmp_path, **{"pretrain.enabled": False}))
    assert result.exit_code == 0 and "not trained" in result.output
    assert not any(listed(out)) and json.loads((live / "metrics.json").read_text()) == {}


def test_on_it_trains_on_its_own_corpus_and_train_cls_starts_from_that_encoder(
    tmp_path, tiny_layout
):
    params = _params(tmp_path, **{"pretrain.enabled": True})
    result, out, live = _pretrain(tmp_path, params)
    assert result.exit_code == 0, result.output
    _, config = load_model(out / "model.pt", Classifier, torch.device("cpu"))
    assert config["num_classes"] == 4  # the corpus's classes, not the dataset's
    assert 0 <= json.loads((live / "metrics.json").read_text())["val"]["map"] <= 1
    # train_cls with that folder: the checkpoint's digest holds the encoder file, and it trains
    args = ["--params", str(params), "--dataset", str(tiny_layout.root), "--pretrain", str(out)]
    args += ["--out", str(tmp_path / "cls.pt"), "--checkpoint", str(tmp_path / "cls_ck.pt")]
    args += ["--live-dir", str(tmp_path / "cls_live")]
    trained = runner.invoke(train_cls.app, args)
    assert trained.exit_code == 0, trained.output
    _, stored = load_model(tmp_path / "cls.pt", Classifier, torch.device("cpu"))
    assert stored["num_classes"] == len(tiny_layout.classes) - 1


@pytest.mark.bad_input
def test_imagenet_weights_and_a_pretrained_encoder_together_are_refused(tmp_path):
    params = _params(tmp_path, **{"pretrain.enabled": True, "cls.pretrained": True})
    result, out, _ = _pretrain(tmp_path, params)
    assert result.exit_code == 1
    assert "cls.pretrained and pretrain.enabled" in result.stderr and not any(out.glob("*.pt"))


def test_the_encoder_is_copied_whole_and_the_rest_left_as_built(tmp_path):
    torch.manual_seed(0)
    config = {"backbone": "resnet18", "num_classes": 16, "output_stride": 16}
    trained = build_model(Classifier, config)
    save_model(tmp_path / "pre.pt", trained, config)
    mdc = {"grid": 2, "position": 4, "shared": True, "activation": True}
    target = build_model(Classifier, {**config, "num_classes": 3, "mdc": mdc})
    head = target.classifier.weight.clone()
    assert load_encoder(target, tmp_path / "pre.pt", Classifier) == config
    for name, value in trained.encoder.state_dict().items():
        assert torch.equal(target.encoder.state_dict()[name], value), name
    assert torch.equal(target.classifier.weight, head)  # another head: left as built


@pytest.mark.bad_input
def test_an_encoder_of_another_architecture_is_refused_by_name(tmp_path):
    config = {"backbone": "resnet10", "num_classes": 16, "output_stride": 16}
    save_model(tmp_path / "pre.pt", build_model(Classifier, config), config)
    target = build_model(Classifier, {**config, "backbone": "resnet18"})
    with pytest.raises(ValueError, match=r"pre\.pt: its encoder does not fit"):
        load_encoder(target, tmp_path / "pre.pt", Classifier)


def test_its_dvc_params_are_the_classifiers_recipe_keys_and_nothing_of_a_variant():
    """One pretrained encoder for every variant of the classifier: pretrain lists the keys of
    the shared training recipe, not the LDM's, the MDC's or Puzzle-CAM's."""
    import yaml
    from conftest import ROOT

    from stages.params.train import TrainParams

    params = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pretrain"]["params"]
    recipe = {key.removeprefix("cls.") for key in params if key.startswith("cls.")}
    assert recipe == set(TrainParams.model_fields) - {"epochs"}  # pretrain.epochs instead
    assert "pretrain" in params and "seed" not in params  # its own seed, not the training's
