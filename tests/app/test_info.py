"""destseg info: what a model file holds, read without building its network."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from destseg.app.main import app
from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, save_model

CONFIG = {"backbone": "resnet10", "num_classes": 2, "output_stride": 16}


def test_it_reads_kind_config_classes_parameters_and_input(tmp_path):
    model = build_model(Classifier, CONFIG)
    save_model(tmp_path / "model.pt", model, CONFIG, ["background", "leaf", "stem"])
    result = CliRunner().invoke(app, ["info", str(tmp_path / "model.pt"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["kind"] == "classifier" and info["config"] == CONFIG
    assert info["classes"] == ["background", "leaf", "stem"]
    weights = sum(t.numel() for t in model.parameters())
    assert info["parameters"] == weights
    assert info["input"]["std"] == [0.229, 0.224, 0.225]
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "model.pt")]).output
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
        result = CliRunner().invoke(app, ["info", str(tmp_path / name)])
        assert result.exit_code == 1 and expected in result.output, result.output
        assert "Traceback" not in result.output


def test_the_installed_command_runs_outside_the_checkout(tmp_path, monkeypatch, capsys):
    """``pip install`` puts ``destseg`` beside this Python: it runs from any folder, with no
    checkout on the path (the stages and scripts are not installed); ``python -m destseg`` is
    the same command."""
    save_model(tmp_path / "model.pt", build_model(Classifier, CONFIG), CONFIG, ["bg", "cat", "dog"])
    command = Path(sys.executable).parent / "destseg"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(command), "info", "model.pt", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classes"] == ["bg", "cat", "dog"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["destseg", "info", "absent.pt"])
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_module("destseg", run_name="__main__")
    assert exit_status.value.code == 1
    assert "error: absent.pt: model file not found" in capsys.readouterr().err
