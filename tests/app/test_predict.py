"""destseg predict: new images of any common format segmented into label maps, overlays with
class names and a contact sheet; nothing left out without a word."""

import numpy as np
import pytest
import torch
from conftest import ROOT, listed
from PIL import Image
from typer.testing import CliRunner

from destseg.app import predict
from destseg.app.main import app
from destseg.dataset.layout import VOCLayout, load_mask
from destseg.models.model_file import build_model, save_model
from destseg.models.segmenter import Segmenter

CLASSES = ["background", "leaf", "stem", "flower"]


def _setup(tmp_path):
    torch.manual_seed(0)
    config = {"backbone": "resnet18", "num_classes": len(CLASSES), "output_stride": 16}
    save_model(tmp_path / "model.pt", build_model(Segmenter, config), config)
    VOCLayout(tmp_path / "dataset").write_metadata(CLASSES, {})
    new = tmp_path / "new"
    new.mkdir()
    rng = np.random.default_rng(0)
    for name, size in [("a.jpg", (40, 30)), ("b.png", (24, 36)), ("c.webp", (33, 21))]:
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(new / name)
    (new / "notes.txt").write_text("not an image")
    return new


# evaluate's scales and flip in params.yaml, on the CPU
EVALUATE = ["--scale", "1.0", "--scale", "0.5", "--scale", "1.5", "--flip", "--device", "cpu"]


def _invoke(tmp_path, *inputs, options=EVALUATE):
    args = ["predict", *map(str, inputs), *options]
    args += ["--dataset", str(tmp_path / "dataset"), "--model", str(tmp_path / "model.pt")]
    return CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])


def test_every_image_format_gets_a_label_map_an_overlay_and_a_row_of_the_sheet(tmp_path):
    new = _setup(tmp_path)
    with pytest.warns(UserWarning, match="1 files are not images and are left out: .*notes.txt"):
        result = _invoke(tmp_path, new)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    names = [p.name for p in listed(out)]
    assert names == sorted(
        ["a.png", "a_overlay.png", "b.png", "b_overlay.png", "c.png", "c_overlay.png",
         "contact_sheet.png"]
    )  # fmt: skip
    assert Image.open(out / "b.png").mode == "P" and Image.open(out / "c.png").size == (33, 21)
    assert load_mask(out / "a.png").max() < len(CLASSES)
    sheet = Image.open(out / "contact_sheet.png")
    rows = [Image.open(out / f"{n}_overlay.png") for n in "abc"]
    assert sheet.height == sum(r.height for r in rows)


def test_the_class_names_a_model_file_carries_need_no_dataset(tmp_path, monkeypatch):
    new = _setup(tmp_path)
    names = ["background", "ash", "birch", "cedar"]  # not the dataset's: these must win
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    model = build_model(Segmenter, state["config"])
    model.load_state_dict(state["state_dict"])
    save_model(tmp_path / "model.pt", model, state["config"], names)
    (tmp_path / "dataset" / "classes.json").unlink()
    legend_for, named = predict.legend_for, []
    monkeypatch.setattr(
        predict, "legend_for", lambda labels, classes: named.append(classes) or legend_for(
            labels, classes
        )
    )
    result = _invoke(tmp_path, new / "a.jpg")
    assert result.exit_code == 0, result.output
    assert named == [names] and (tmp_path / "out" / "a_overlay.png").is_file()


@pytest.mark.bad_input
def test_an_image_that_does_not_decode_and_colliding_names_are_refused_by_name(tmp_path):
    new = _setup(tmp_path)
    data = (new / "a.jpg").read_bytes()
    (new / "a.jpg").write_bytes(data[: len(data) // 2])  # truncated
    result = _invoke(tmp_path, new / "a.jpg")
    assert result.exit_code == 1 and "a.jpg: not a readable image" in result.output
    (new / "a.jpg").write_bytes(data)
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "a.png")
    result = _invoke(tmp_path, new / "a.jpg", other / "a.png")
    assert result.exit_code == 1 and "one output name (a.png) for two images" in result.output
    assert not (tmp_path / "out").exists()


def test_the_documented_loading_code_gives_predicts_label_map(tmp_path, monkeypatch):
    """docs/datasets.md's plain-PyTorch lines, run as written, against destseg predict with its
    defaults (one scale without flip)."""
    new = _setup(tmp_path)
    assert _invoke(tmp_path, new / "a.jpg", options=["--device", "cpu"]).exit_code == 0
    text = (ROOT / "docs" / "datasets.md").read_text()
    code = text.split("In\nyour own code")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "data" / "train_seg").mkdir(parents=True)
    (tmp_path / "model.pt").rename(tmp_path / "data" / "train_seg" / "model.pt")
    (new / "a.jpg").rename(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)
    expected = load_mask(tmp_path / "out" / "a.png")
    assert len(np.unique(expected)) > 1  # a map that a wrong input could get wrong
    assert np.array_equal(scope["labels"].numpy(), expected)
    # the check has teeth: inputs in [0, 1] without the normalisation give another map
    unnormalised = code.replace("((image / 255 - mean) / std)", "(image / 255)")
    exec(unnormalised, scope)
    assert not np.array_equal(scope["labels"].numpy(), expected)


def test_crf_refines_each_prediction_with_the_refine_stages_kernels(tmp_path):
    from destseg.dataset.layout import load_image
    from destseg.dataset.torch_dataset import image_to_tensor
    from destseg.evaluation.inference import segment
    from destseg.models.model_file import load_model
    from destseg.refine.crf import DenseCRF

    new = _setup(tmp_path)
    result = _invoke(tmp_path, new / "a.jpg", "--crf")
    assert result.exit_code == 0, result.output
    model, _ = load_model(tmp_path / "model.pt", Segmenter, torch.device("cpu"))
    image = load_image(new / "a.jpg")
    probs = segment(model, image_to_tensor(image), [1.0, 0.5, 1.5], True).numpy()
    refined = DenseCRF()(image, probs).argmax(0)
    written = load_mask(tmp_path / "out" / "a.png")
    assert np.array_equal(written, refined)
    assert not np.array_equal(written, probs.argmax(0))  # the CRF did change the map


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--scale", "0"], "--scale 0.0: a factor of the image size in (0, 8]"),
        (["--scale", "nan"], "--scale nan: a factor of the image size"),
        (["--device", "gpu"], "--device gpu: choose auto, cpu, cuda or cuda:N"),
        (["--amp", "fp8"], "--amp fp8: choose one of auto, bf16, fp16, off"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_before_any_work(tmp_path, options, expected):
    new = _setup(tmp_path)
    result = _invoke(tmp_path, new / "a.jpg", options=options)
    assert result.exit_code == 1 and f"error: {expected}" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
