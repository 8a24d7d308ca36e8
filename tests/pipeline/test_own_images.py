"""A user's own images end to end, as docs/datasets.md tells it: a folder of images whose only
labels are tags in a CSV, masks for the validation images alone, the documented params block,
``dvc repro``, then ``destseg predict`` segments new images of three formats and ``destseg export``
writes TorchScript and ONNX files that label them as ``predict`` does.

Nothing converts the folder: it is written as a user keeps it (``JPEGImages/``, the masked
validation images' ``SegmentationClass/``, the two lists, ``tags.csv`` with ``.jpg`` names).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, built_once, listed
from PIL import Image
from pipeline_repo import FOLDER_CLASSES, TINY_DATA, TINY_PARAMS, prepare_repo, run
from typer.testing import CliRunner

from destseg.app.main import app
from destseg.dataset.layout import VOCLayout, load_mask
from destseg.dataset.sources.synthetic import SyntheticSpec, write_dataset

# the documented params block of a tags-only dataset (docs/datasets.md), thresholds as numbers
TAGS_ONLY = {
    "data.source": "folder",
    "data.folder.classes": FOLDER_CLASSES,
    "splits.train": "train",
    "splits.val": "val",
    "splits.score_cams": None,
    "splits.tune": None,
    "cam.threshold": 0.5,
    "refine.bg_threshold": 0.3,
    "refine.propagated_bg_threshold": 0.3,
}
NEW_IMAGES = ("field.png", "garden.webp", "street.jpeg")


def _tags_only_folder(root: Path, spec: SyntheticSpec, seed: int) -> VOCLayout:
    """The tiny data as a user with tags keeps it: every training image tagged in
    ``tags.csv`` and without a mask, the validation images with theirs."""
    layout = VOCLayout(root)
    write_dataset(layout, spec, seed)
    train = layout.ids("train")
    rows = [f"{i}.jpg,{' '.join(FOLDER_CLASSES[c] for c in layout.labels[i])}" for i in train]
    (root / "tags.csv").write_text("\n".join(["image,tags", *rows]) + "\n")
    for image_id in train:
        layout.mask_path(image_id).unlink()
    for name in ("tune.txt", "report.txt"):  # the synthetic source's own lists
        (root / "ImageSets" / "Segmentation" / name).unlink()
    for name in ("classes.json", "labels.json"):  # not part of a user's folder
        (root / name).unlink()
    return layout


def _build(folder: Path) -> None:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    spec = {**data["synthetic"], **TINY_DATA, "train_images": 8, "val_images": 3}
    user = folder / "leaves"
    _tags_only_folder(user, SyntheticSpec(**spec), data["seed"])
    # images the pipeline never saw, as files of three formats
    other = VOCLayout(folder / "other")
    write_dataset(other, SyntheticSpec(**{**spec, "train_images": 1, "val_images": 3}), 7)
    (folder / "new").mkdir()
    for image_id, name in zip(other.ids("val"), NEW_IMAGES, strict=True):
        Image.open(other.image_path(image_id)).save(folder / "new" / name)
    # the fewest steps that run every stage a tags-only run needs (the CRF's pseudo-masks: the
    # affinity stages, run on a folder of every kind in test_e2e.py, do the same either way)
    overrides = {
        **TINY_PARAMS,
        "cls.epochs": 2,
        "refine.method": "crf",
        "seg.epochs": 2,
        **TAGS_ONLY,
        "data.folder.root": str(user),
        "data.folder.tags": str(user / "tags.csv"),
    }
    (folder / "repo").mkdir()
    env = prepare_repo(folder / "repo", overrides, OMP_NUM_THREADS="1")
    (folder / "repro.log").write_text(run(["dvc", "repro"], folder / "repo", env))


@pytest.fixture(scope="module")
def tags_only(tmp_path_factory):
    return built_once(tmp_path_factory, "tags_only_pipeline", _build)


def _json(path: Path):
    return json.loads(path.read_text())


@pytest.mark.e2e
def test_a_tags_only_folder_trains_a_segmenter_and_says_what_it_did_not_score(tags_only):
    root = tags_only / "repo"
    dataset = VOCLayout(root / "data/dataset")
    assert dataset.classes == FOLDER_CLASSES
    assert not any(dataset.mask_path(i).exists() for i in dataset.ids("train"))
    output = (tags_only / "repro.log").read_text()
    assert "CAMs not scored (splits.score_cams)" in output and "pseudo-masks not scored" in output
    assert _json(root / "data/metrics/make_cam.json") == {"threshold": 0.5}
    refine = _json(root / "data/metrics/refine.json")
    assert refine.keys() == {"ignored_fraction", "bg_threshold"} and refine["bg_threshold"] == 0.3
    assert 0 <= refine["ignored_fraction"] <= 1
    summary = _json(root / "data/metrics/summary.json")
    assert summary["cam_miou"] is None and summary["mask_miou"] is None
    assert 0 < summary["seg_miou"] <= 1  # the segmenter is scored on the masked val images
    assert sorted(p.stem for p in listed(root / "data/pseudo_mask")) == dataset.ids("train")
    sweep = pd.read_csv(root / "data/plots/cam_threshold_sweep.csv")
    assert sweep["miou"].isna().all() and 0.5 in set(sweep["threshold"])
    # the gallery draws training images without a truth panel: image, a CAM per class,
    # pseudo-mask and segmenter
    size = yaml.safe_load((root / "params.yaml").read_text())["gallery"]["size"]
    drawn = [p for p in listed(root / "data/gallery") if p.suffix == ".png"]
    assert drawn
    for figure in drawn:
        classes = len(dataset.labels[figure.stem])
        assert Image.open(figure).width == (3 + classes) * size


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_destseg_segments_new_images_and_exports_what_predict_does(tags_only, tmp_path):
    """``destseg predict`` and ``destseg export`` as a user runs them (the command's own
    code, in this process: tests/app/test_info.py runs the installed script), on the pipeline's
    segmenter: label maps and overlays of images in three formats, and TorchScript and ONNX
    files whose label maps of them are predict's."""
    model = tags_only / "repo" / "data/train_seg/model.pt"
    new = tags_only / "new"
    predicted = tmp_path / "predictions"
    result = CliRunner().invoke(
        app, ["predict", str(new), "--model", str(model), "--out", str(predicted)]
    )
    assert result.exit_code == 0, result.output
    stems = sorted(Path(name).stem for name in NEW_IMAGES)
    names = {p.name for p in listed(predicted)}
    assert names == {
        "contact_sheet.png",
        *(f"{s}.png" for s in stems),
        *(f"{s}_overlay.png" for s in stems),
    }
    exported = tmp_path / "exported"
    result = CliRunner().invoke(
        app, ["export", "--model", str(model), "--out", str(exported), "--check", str(new)]
    )
    assert result.exit_code == 0, result.output
    output = result.output
    assert "torchscript: largest logit difference" in output and "onnx: largest" in output
    info = _json(exported / "segmenter.json")
    assert info["classes"] == FOLDER_CLASSES
    mean = np.array(info["input"]["mean"], np.float32)[:, None, None]
    std = np.array(info["input"]["std"], np.float32)[:, None, None]
    scripted = torch.jit.load(str(exported / "segmenter.torchscript.pt"))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported / "segmenter.onnx"))
    for name in NEW_IMAGES:
        pixels = np.asarray(Image.open(new / name).convert("RGB"))
        image = ((pixels.transpose(2, 0, 1) / 255 - mean) / std).astype(np.float32)[None]
        expected = load_mask(predicted / f"{Path(name).stem}.png")
        assert expected.shape == pixels.shape[:2] and expected.max() < len(FOLDER_CLASSES)
        torchscript = scripted(torch.from_numpy(image))[0].argmax(0).numpy()
        assert np.array_equal(torchscript, expected)
        onnx = session.run(None, {"image": image})[0][0].argmax(0)
        assert np.array_equal(onnx, expected)
