"""The paper's configuration, configs/voc2012.yaml, run as shipped through every stage on data
with VOC's shapes: the voc2012 source downloading VOC-layout archives from 127.0.0.1, images of
VOC's landscape, wide and portrait shapes at a quarter of its size (125 x 94, 125 x 83 and 94 x 125:
odd sides, which the strided alignment must handle) with VOC's 21 classes, ResNet-50 at crop
512, LDM grid 7 and MDC, the four CAM scales with flips, IRN's confident regions, AffinityNet at
stride 8, the walk at 256 steps, DeepLabV3-ResNet-50 and the six-scale evaluation with flips.

Overridden, and nothing else: where the archives come from, the sizes (image counts follow from
the archives; epochs 1, batch 1 or 2, as two training images cannot fill a batch of 16:
:func:`pipeline_repo.toy_training`), and ``pretrained: false`` (no ImageNet weights offline)
together with the freezing of ImageNet statistics and stages that only makes sense with them.
"""

import hashlib
import json

import pytest
import yaml
from conftest import ROOT, built_once, listed, pinned
from http_server import LocalServer, Served
from pipeline_repo import dvc_env, own_copy, prepare_repo, run, set_dotted, toy_training
from voc_archives import VOC_SIZES_QUARTER, voc_shaped_archives

from destseg.dataset.layout import VOCLayout, load_image
from destseg.dataset.sources.voc2012 import CLASSES, TUNE_EVERY
from destseg.evaluation.thresholds import candidates

CONFIG = ROOT / "configs" / "voc2012.yaml"


def voc_overrides(url: str, downloads: str, voc: bytes, sbd: bytes) -> dict:
    return toy_training() | {
        "data.voc2012.download_dir": downloads,
        "data.voc2012.voc_url": f"{url}/voc.tar",
        "data.voc2012.voc_md5": hashlib.md5(voc).hexdigest(),
        "data.voc2012.sbd_url": f"{url}/sbd.tgz",
        "data.voc2012.sbd_md5": hashlib.md5(sbd).hexdigest(),
    }


def _prepare_voc_shaped(folder):
    """The repository with configs/voc2012.yaml at toy size, its dataset prepared from
    VOC-shaped archives served on 127.0.0.1: the start of every run here."""
    archives = voc_shaped_archives(VOC_SIZES_QUARTER)
    served = Served(files={"/voc.tar": archives.voc, "/sbd.tgz": archives.sbd})
    with LocalServer(served) as url:
        overrides = voc_overrides(url, str(folder / "downloads"), archives.voc, archives.sbd)
        overrides["gallery.ids"] = archives.voc_train  # VOC's own ids are not in these archives
        (folder / "repo").mkdir()
        env = prepare_repo(folder / "repo", overrides, base=CONFIG)
        run(["dvc", "repro", "prepare"], folder / "repo", env)
    (folder / "overrides.yaml").write_text(yaml.safe_dump(overrides))


@pytest.fixture(scope="module")
def voc_prepared(tmp_path_factory):
    """The prepared repository (built once for every test process of the run, only read), the
    archives it was prepared from and the toy-size overrides."""
    shared = built_once(tmp_path_factory, "voc_prepared", _prepare_voc_shaped)
    overrides = yaml.safe_load((shared / "overrides.yaml").read_text())
    return shared / "repo", voc_shaped_archives(VOC_SIZES_QUARTER), overrides


@pytest.fixture(scope="module")
def voc_repo(voc_prepared, tmp_path_factory):
    """configs/voc2012.yaml reproduced through every stage on VOC-shaped data: its root and the
    archives."""
    prepared, archives, _ = voc_prepared
    root = own_copy(prepared, tmp_path_factory.mktemp("voc_repo"))
    run(["dvc", "repro"], root, dvc_env())
    return root, archives


@pytest.mark.e2e
def test_the_papers_configuration_runs_end_to_end_on_voc_shaped_data(voc_repo):
    root, archives = voc_repo
    layout = VOCLayout(root / "data" / "dataset")
    assert layout.classes == CLASSES
    train_aug = layout.ids("train_aug")
    assert sorted(train_aug) == sorted(archives.voc_train + archives.sbd_only)
    sizes = {load_image(layout.image_path(i)).shape[:2] for i in train_aug}
    assert (94, 125) in sizes and (125, 94) in sizes  # landscape and portrait both
    for folder in ("cam", "aff_labels", "propagated_cam", "pseudo_mask"):
        assert sorted(p.stem for p in listed(root / "data" / folder)) == sorted(train_aug)
    predictions = root / "data" / "evaluate" / "prediction"
    assert sorted(p.stem for p in listed(predictions)) == sorted(archives.voc_val)
    metrics = root / "data" / "metrics"
    for name in ("make_cam.json", "aff_labels.json", "refine.json", "evaluate.json"):
        scores = json.loads((metrics / name).read_text())
        assert 0 <= scores["miou"] <= 1, name
    # thresholds chosen on the tune list (train_aug outside VOC train), as shipped: auto
    assert layout.ids("tune") == sorted(archives.sbd_only)[::TUNE_EVERY]
    for name, key in (("make_cam.json", "threshold"), ("refine.json", "bg_threshold")):
        scores = json.loads((metrics / name).read_text())
        assert scores[key] in candidates() and 0 <= scores["tune_miou"] <= 1
    table = (metrics / "evaluate_per_class.csv").read_text().splitlines()
    assert len(table) == 1 + 21


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["voc2012-recam", "voc2012-puzzle"])
def test_the_control_configurations_make_their_cams_as_shipped(voc_prepared, tmp_path, name):
    """configs/voc2012-recam.yaml and voc2012-puzzle.yaml with the same toy sizes, in a copy of
    the repository prepared for the paper's configuration: they differ from it in the
    classifier alone (tests/stages/test_configs.py), so the stages from train_cls to make_cam
    are theirs, and the dataset, unchanged, is not prepared again. Puzzle-CAM's 4
    micro-batches become 1, as the batch is 1."""
    prepared, _, overrides = voc_prepared
    root, env = own_copy(prepared, tmp_path), dvc_env()
    params = pinned(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))
    for dotted, value in overrides.items():
        set_dotted(params, dotted, value)
    params["cls"]["accumulate"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro", "make_cam"], root, env)
    assert "Running stage 'train_cls'" in output and "Running stage 'prepare'" not in output
    train_aug = VOCLayout(root / "data" / "dataset").ids("train_aug")
    assert sorted(p.stem for p in listed(root / "data" / "cam")) == sorted(train_aug)
    metrics = root / "data" / "metrics"
    assert 0 <= json.loads((metrics / "make_cam.json").read_text())["miou"] <= 1
    trained = json.loads((metrics / "train_cls" / "metrics.json").read_text())
    recam = json.loads((metrics / "train_recam" / "metrics.json").read_text())
    if name == "voc2012-recam":
        assert [p.name for p in listed(root / "data" / "train_recam")] == ["model.pt"]
        assert recam["train"]["loss_recam"] > 0 and 0 <= recam["val"]["map"] <= 1
    else:
        assert trained["train"]["loss_tiled"] > 0 and recam == {}
        assert not any(listed(root / "data" / "train_recam"))
