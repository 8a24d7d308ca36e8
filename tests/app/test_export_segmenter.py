"""destseg export: TorchScript and ONNX files that label every pixel as the
segmenter does, checked before they are written; bad requests refused in one line."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from destseg.app.main import app
from destseg.evaluation.inference import predict
from destseg.models.model_file import build_model, load_model, save_model
from destseg.models.segmenter import Segmenter

CLASSES = ["background", "leaf", "stem"]


def _model(tmp_path):
    torch.manual_seed(0)
    config = {"backbone": "resnet10", "num_classes": len(CLASSES), "output_stride": 16}
    save_model(tmp_path / "model.pt", build_model(Segmenter, config), config, CLASSES)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, (width, height) in [("a.jpg", (70, 45)), ("b.png", (40, 66))]:
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / name)
    return photos


def _invoke(tmp_path, *args):
    base = ["--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "exported")]
    return CliRunner().invoke(app, ["export", *base, *args])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_both_exports_label_new_images_as_predict_does(tmp_path):
    photos = _model(tmp_path)
    (photos / "notes.txt").write_text("not an image")  # named in a warning, left out
    with pytest.warns(UserWarning, match="1 files are not images"):
        result = _invoke(tmp_path, "--check", str(photos))
    assert result.exit_code == 0, result.output
    assert "torchscript: largest logit difference" in result.output
    assert "onnx: largest logit difference" in result.output
    assert "0 pixels labelled otherwise (tolerance 0.001)" in result.output
    out = tmp_path / "exported"
    info = json.loads((out / "segmenter.json").read_text())
    assert info["classes"] == CLASSES and info["input"]["mean"] == [0.485, 0.456, 0.406]
    # a new image of another size, normalised as segmenter.json says, through each file alone
    pixels = np.random.default_rng(1).integers(0, 255, (50, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "new.png")
    expected = predict(
        load_model(tmp_path / "model.pt", Segmenter, torch.device("cpu"))[0],
        tmp_path / "new.png",
        [1.0],
        False,
        torch.device("cpu"),
    )
    mean = np.array(info["input"]["mean"], np.float32)[:, None, None]
    std = np.array(info["input"]["std"], np.float32)[:, None, None]
    image = ((pixels.transpose(2, 0, 1) / 255 - mean) / std).astype(np.float32)[None]
    scripted = torch.jit.load(str(out / "segmenter.torchscript.pt"))
    assert np.array_equal(scripted(torch.from_numpy(image))[0].argmax(0).numpy(), expected)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "segmenter.onnx"))
    logits = session.run(None, {"image": np.concatenate([image, image])})[0]  # a batch of 2
    assert logits.shape == (2, 3, 50, 90)
    assert np.array_equal(logits[1].argmax(0), expected)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "tflite"], "--format tflite: choose torchscript or onnx"),
        (["--format", "torchscript", "--check", "{tiny}"], "each side needs 32"),
        (["--format", "torchscript", "--model", "{missing}"], "missing.pt: segmenter model file"),
    ],
)
def test_a_request_it_cannot_serve_is_one_line(tmp_path, args, expected):
    _model(tmp_path)
    Image.new("RGB", (20, 40)).save(tmp_path / "tiny.png")
    paths = {"tiny": tmp_path / "tiny.png", "missing": tmp_path / "missing.pt"}
    result = _invoke(tmp_path, *[a.format(**paths) for a in args])
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "exported").exists()


@pytest.mark.bad_input
def test_onnx_without_its_extra_says_how_to_install_it(tmp_path, monkeypatch):
    _model(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    result = _invoke(tmp_path, "--format", "onnx")
    assert result.exit_code == 1
    assert "--format onnx needs the onnx extra (onnxruntime is not installed)" in result.output


def test_a_model_file_without_class_names_takes_its_datasets(tmp_path):
    from destseg.dataset.layout import VOCLayout

    _model(tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    del state["classes"]
    torch.save(state, tmp_path / "model.pt")
    VOCLayout(tmp_path / "dataset").write_metadata(["background", "ash", "elm"], {})
    args = ["--format", "torchscript", "--dataset", str(tmp_path / "dataset")]
    result = _invoke(tmp_path, *args)
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "exported" / "segmenter.json").read_text())
    assert info["classes"] == ["background", "ash", "elm"]
