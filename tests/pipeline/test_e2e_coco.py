"""The COCO configuration, configs/coco2014.yaml, run as shipped through every stage on data
with COCO's shapes: the coco2014 source downloading COCO-format archives from 127.0.0.1 (zip
archives, instances files with COCO's 80 categories and their ids, polygons and a crowd RLE),
images of COCO's landscape, portrait and 3:2 shapes at a quarter of its size (160 x 120,
120 x 160, 160 x 107), ResNet-50 at crop 512, LDM grid 7 and MDC, the four CAM scales with
flips, ReCAM's confident regions, AffinityNet at stride 8 with crop 512, the walk at beta 10,
DeepLabV3 and the six-scale evaluation with flips, over 81 classes.

Overridden, and nothing else: where the archives come from, the sizes (image counts follow from
the archives; epochs 1, batch 1 or 2: :func:`pipeline_repo.toy_training`), and ``pretrained:
false`` with the freezing that only makes sense with ImageNet weights.
"""

import json

import pytest
from coco_archives import CLASSES, COCO_SIZES_QUARTER, coco_shaped_archives
from conftest import ROOT, listed
from http_server import LocalServer, Served
from pipeline_repo import reproduce, toy_training

from destseg.dataset.layout import VOCLayout, load_image
from destseg.dataset.sources.coco2014 import TUNE_EVERY
from destseg.evaluation.thresholds import candidates

CONFIG = ROOT / "configs" / "coco2014.yaml"


def coco_overrides(url: str, downloads: str, md5s: dict[str, str]) -> dict:
    sizes = toy_training()
    sizes["data.coco2014.download_dir"] = downloads
    for key in ("train", "val", "annotations"):
        sizes[f"data.coco2014.{key}_url"] = f"{url}/{key}.zip"
        sizes[f"data.coco2014.{key}_md5"] = md5s[key]
    return sizes


@pytest.fixture(scope="module")
def coco_repo(tmp_path_factory):
    import hashlib

    data = coco_shaped_archives(COCO_SIZES_QUARTER, train_images=2, val_images=1)
    blobs = {"train": data.train, "val": data.val, "annotations": data.annotations}
    md5s = {key: hashlib.md5(blob).hexdigest() for key, blob in blobs.items()}
    repo = tmp_path_factory.mktemp("coco_repo")
    served = Served(files={f"/{key}.zip": blob for key, blob in blobs.items()})
    with LocalServer(served) as url:
        root, _ = reproduce(repo, coco_overrides(url, str(repo / "downloads"), md5s), CONFIG)
    return root, data


@pytest.mark.e2e
def test_the_coco_configuration_runs_end_to_end_on_coco_shaped_data(coco_repo):
    root, data = coco_repo
    layout = VOCLayout(root / "data" / "dataset")
    assert layout.classes == CLASSES and len(CLASSES) == 81
    train = layout.ids("train")
    assert train == data.train_ids and layout.ids("val") == data.val_ids
    sizes = {load_image(layout.image_path(i)).shape[:2] for i in train + layout.ids("val")}
    assert sizes == {(120, 160), (160, 120)}  # landscape and portrait
    for folder in ("cam", "aff_labels", "propagated_cam", "pseudo_mask"):
        assert sorted(p.stem for p in listed(root / "data" / folder)) == train
    predictions = root / "data" / "evaluate" / "prediction"
    assert sorted(p.stem for p in listed(predictions)) == data.val_ids
    metrics = root / "data" / "metrics"
    for name in ("make_cam.json", "aff_labels.json", "refine.json", "evaluate.json"):
        scores = json.loads((metrics / name).read_text())
        assert 0 <= scores["miou"] <= 1, name
    assert layout.ids("tune") == train[::TUNE_EVERY]
    assert layout.ids("report") == sorted(set(train) - set(layout.ids("tune")))
    for name, key in (("make_cam.json", "threshold"), ("refine.json", "bg_threshold")):
        scores = json.loads((metrics / name).read_text())
        assert scores[key] in candidates() and 0 <= scores["tune_miou"] <= 1
    table = (metrics / "evaluate_per_class.csv").read_text().splitlines()
    assert len(table) == 1 + 81
    assert listed(root / "data" / "gallery")  # drawn from the report list with gallery.seed
