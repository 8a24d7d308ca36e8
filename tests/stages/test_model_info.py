"""scripts/model_info.py: what a model file holds, read without building its network."""

import json
import sys

import pytest
import torch
from conftest import ROOT
from typer.testing import CliRunner

from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, save_model

sys.path.insert(0, str(ROOT / "scripts"))

import model_info

CONFIG = {"backbone": "resnet10", "num_classes": 2, "output_stride": 16}


def test_it_reads_kind_config_classes_parameters_and_input(tmp_path):
    model = build_model(Classifier, CONFIG)
    save_model(tmp_path / "model.pt", model, CONFIG, ["background", "leaf", "stem"])
    result = CliRunner().invoke(model_info.app, [str(tmp_path / "model.pt"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["kind"] == "classifier" and info["config"] == CONFIG
    assert info["classes"] == ["background", "leaf", "stem"]
    weights = sum(t.numel() for t in model.parameters())
    assert info["parameters"] == weights
    assert info["input"]["std"] == [0.229, 0.224, 0.225]
    shown = CliRunner().invoke(model_info.app, [str(tmp_path / "model.pt")]).output
    assert f"classifier, {weights:,} parameters" in shown
    assert "classes: background, leaf, stem" in shown


@pytest.mark.bad_input
def test_a_file_that_is_not_a_model_file_is_one_line(tmp_path):
    torch.save({"kind": "optimizer"}, tmp_path / "other.pt")
    (tmp_path / "notes.json").write_text("{}")
    for name, expected in [
        ("other.pt", "other.pt: not a model file of the pipeline (kind 'optimizer')"),
        ("notes.json", "notes.json: "),
        ("absent.pt", "absent.pt: model file not found"),
    ]:
        result = CliRunner().invoke(model_info.app, [str(tmp_path / name)])
        assert result.exit_code == 1 and expected in result.output, result.output
        assert "Traceback" not in result.output
