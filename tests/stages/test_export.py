"""Test-set export in the VOC evaluation server's layout."""

import sys
import tarfile

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, listed
from PIL import Image
from typer.testing import CliRunner

from destseg.dataset.layout import load_mask
from destseg.evaluation.inference import predict
from destseg.models.model_file import build_model, load_model, save_model
from destseg.models.segmenter import Segmenter

sys.path.insert(0, str(ROOT / "scripts"))

import export_voc_test

SERVER_DIR = "results/VOC2012/Segmentation/comp6_test_cls"


def _setup(tmp_path):
    torch.manual_seed(0)
    config = {"backbone": "resnet18", "num_classes": 4, "output_stride": 16}
    save_model(tmp_path / "model.pt", build_model(Segmenter, config), config)
    images = tmp_path / "JPEGImages"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, size in [("2008_000001", (40, 30)), ("2008_000002", (24, 36))]:
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{name}.jpg")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["device"] = "cpu"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return images


def _invoke(tmp_path, *extra):
    args = ["--images", str(tmp_path / "JPEGImages"), "--params", str(tmp_path / "params.yaml")]
    args += ["--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "out"), *extra]
    return CliRunner().invoke(export_voc_test.app, args)


def test_export_writes_the_server_layout_and_archive(tmp_path):
    """The label maps are ``destseg predict``'s at evaluate's scales and flip, in the VOC
    palette, under the server's folders, and the archive holds them."""
    images = _setup(tmp_path)
    result = _invoke(tmp_path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / SERVER_DIR
    assert sorted(p.name for p in listed(folder)) == ["2008_000001.png", "2008_000002.png"]
    first = Image.open(folder / "2008_000001.png")
    assert first.mode == "P" and first.size == (40, 30)
    assert Image.open(folder / "2008_000002.png").size == (24, 36)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())["evaluate"]
    model = load_model(tmp_path / "model.pt", Segmenter, torch.device("cpu"))[0]
    for name in ("2008_000001", "2008_000002"):
        expected = predict(
            model, images / f"{name}.jpg", params["scales"], params["flip"], torch.device("cpu")
        )
        assert np.array_equal(load_mask(folder / f"{name}.png"), expected)
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert f"{SERVER_DIR}/2008_000002.png" in names


def test_export_follows_an_id_list_and_names_a_missing_image(tmp_path):
    _setup(tmp_path)
    (tmp_path / "test.txt").write_text("2008_000002\n")
    assert _invoke(tmp_path, "--list", str(tmp_path / "test.txt")).exit_code == 0
    folder = tmp_path / "out" / SERVER_DIR
    assert [p.name for p in listed(folder)] == ["2008_000002.png"]
    (tmp_path / "test.txt").write_text("2008_000002\n2008_000009\n")
    result = _invoke(tmp_path, "--list", str(tmp_path / "test.txt"))
    assert result.exit_code == 1 and "2008_000009.jpg: image of" in result.output


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", ["../../2008_000001", "/tmp/2008_000001", "sub\\2008_000001"])
def test_export_refuses_list_ids_that_leave_the_image_folder(tmp_path, bad):
    _setup(tmp_path)
    (tmp_path / "test.txt").write_text(f"2008_000002\n{bad}\n")
    result = _invoke(tmp_path, "--list", str(tmp_path / "test.txt"))
    assert result.exit_code == 1
    assert f"test.txt:2: image id {bad!r} is not a plain file name" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
def test_export_into_another_stages_folder_is_refused_before_predicting(tmp_path):
    """--out at the prepared dataset: one line, nothing written into it."""
    _setup(tmp_path)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / ".destseg-output").write_text("prepare\n")
    result = CliRunner().invoke(
        export_voc_test.app,
        ["--images", str(tmp_path / "JPEGImages"), "--params", str(tmp_path / "params.yaml"),
         "--model", str(tmp_path / "model.pt"), "--out", str(dataset)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"inside {dataset}, the prepare stage's output" in result.output
    assert sorted(p.name for p in dataset.iterdir()) == [".destseg-output"]


def test_export_names_the_files_it_leaves_out(tmp_path):
    images = _setup(tmp_path)
    Image.new("RGB", (8, 8)).save(images / "2008_000003.png")
    with pytest.warns(UserWarning, match=r"1 files that are not \.jpg are left out \(2008_000003"):
        result = _invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert len(listed(tmp_path / "out" / SERVER_DIR)) == 2
