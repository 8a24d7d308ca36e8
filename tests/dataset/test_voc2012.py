"""PASCAL VOC 2012 + SBD: train_aug arithmetic, SBD masks, and the whole prepare stage against
small archives served on 127.0.0.1."""

import hashlib
import json

import numpy as np
import pytest
import yaml
from conftest import ROOT
from http_server import LocalServer, Served
from torchvision.datasets import SBDataset
from torchvision.datasets.voc import DATASET_YEAR_DICT
from typer.testing import CliRunner
from voc_archives import SBD, VOC, encode, sbd_mat, tar, xml

from destseg.dataset.layout import VOCLayout, load_mask
from destseg.dataset.sources import voc2012
from destseg.dataset.sources.download import Archive
from destseg.dataset.sources.folder import DatasetError
from stages.prepare import app

# two VOC train, two VOC val images; SBD adds s1..s3 and repeats a1 and v1
VOC_TRAIN, VOC_VAL = ["a1", "a2"], ["v1", "v2"]
SBD_TRAIN, SBD_VAL = ["s1", "s2", "v1"], ["s3", "a1"]
OBJECTS = {  # XML objects per image (class names)
    "a1": ["cat", "dog"], "a2": ["person"], "v1": ["car"], "v2": ["cat", "cat"],
    "s1": ["dog"], "s2": ["bus", "person"], "s3": ["sheep"], "x9": ["cow"],
}  # fmt: skip


def test_train_aug_is_sbd_and_voc_train_minus_voc_val():
    assert voc2012.train_aug_ids(SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL) == [
        "a1", "a2", "s1", "s2", "s3",
    ]  # fmt: skip
    # disjoint lists add up; val removes only what it contains
    ids = voc2012.train_aug_ids(["1", "2"], ["3"], ["4"], ["2", "9"])
    assert ids == ["1", "3", "4"]


def test_archives_and_params_match_torchvision():
    voc = DATASET_YEAR_DICT["2012"]
    assert (voc2012.VOC_ARCHIVE.url, voc2012.VOC_ARCHIVE.md5) == (voc["url"], voc["md5"])
    assert (voc2012.SBD_ARCHIVE.url, voc2012.SBD_ARCHIVE.md5) == (SBDataset.url, SBDataset.md5)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["voc2012"]
    assert (params["voc_url"], params["voc_md5"]) == (voc["url"], voc["md5"])
    assert (params["sbd_url"], params["sbd_md5"]) == (SBDataset.url, SBDataset.md5)
    assert len(voc2012.CLASSES) == 21 and voc2012.CLASSES[0] == "background"


def _mask(seed: int, values=(0, 8, 12)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(values, dtype=np.uint8), size=(20, 30))


def test_sbd_mask_reads_the_class_map(tmp_path):
    mask = _mask(0)
    (tmp_path / "a.mat").write_bytes(sbd_mat(mask))
    assert np.array_equal(voc2012.sbd_mask(tmp_path / "a.mat"), mask)
    (tmp_path / "b.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"b\.mat: not an SBD class file"):
        voc2012.sbd_mask(tmp_path / "b.mat")


def _archives() -> tuple[bytes, bytes]:
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    voc = {f"{VOC}/JPEGImages/{i}.jpg": encode(image, "RGB") for i in OBJECTS}
    voc |= {f"{VOC}/Annotations/{i}.xml": xml(names) for i, names in OBJECTS.items()}
    voc |= {f"{VOC}/SegmentationClass/{i}.png": encode(_mask(1), "P") for i in VOC_TRAIN + VOC_VAL}
    for name, ids in {"train": VOC_TRAIN, "val": VOC_VAL, "trainval": VOC_TRAIN + VOC_VAL}.items():
        voc[f"{VOC}/ImageSets/Segmentation/{name}.txt"] = "".join(f"{i}\n" for i in ids).encode()
    voc[f"{VOC}/SegmentationObject/a1.png"] = b"not needed"
    sbd = {f"{SBD}/cls/{i}.mat": sbd_mat(_mask(2 + n)) for n, i in enumerate(["s1", "s2", "s3"])}
    sbd |= {f"{SBD}/cls/{i}.mat": sbd_mat(_mask(9, (0, 1))) for i in ["a1", "v1"]}
    sbd[f"{SBD}/train.txt"] = "".join(f"{i}\n" for i in SBD_TRAIN).encode()
    sbd[f"{SBD}/val.txt"] = "".join(f"{i}\n" for i in SBD_VAL).encode()
    return tar(voc, "w"), tar(sbd, "w:gz")


def _params(tmp_path, url: str, voc: bytes, sbd: bytes, sbd_md5: str | None = None):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "voc2012"
    params["data"]["voc2012"] = {
        "download_dir": str(tmp_path / "downloads"),
        "voc_url": f"{url}/voc.tar",
        "voc_md5": hashlib.md5(voc).hexdigest(),
        "sbd_url": f"{url}/sbd.tgz",
        "sbd_md5": sbd_md5 or hashlib.md5(sbd).hexdigest(),
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_prepare_downloads_and_builds_train_aug(tmp_path):
    voc, sbd = _archives()
    served = Served(files={"/voc.tar": voc, "/sbd.tgz": sbd}, cut_after={"/sbd.tgz": 500})
    out = tmp_path / "dataset"
    with LocalServer(served) as url:
        params = _params(tmp_path, url, voc, sbd)
        args = ["--params", str(params), "--out", str(out)]
        cut = CliRunner().invoke(app, args)
        assert cut.exit_code == 1 and "run the stage again to resume" in cut.output
        assert not out.exists()
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("/sbd.tgz", "bytes=500-") in served.requests
    assert [p for p, _ in served.requests].count("/voc.tar") == 1  # verified once, reused

    layout = VOCLayout(out)
    assert layout.ids("train_aug") == ["a1", "a2", "s1", "s2", "s3"]
    assert layout.ids("train") == VOC_TRAIN and layout.ids("val") == VOC_VAL
    assert not layout.split_path("trainval").exists()
    assert layout.classes == voc2012.CLASSES
    # labels from the XML (difficult objects included), never from elsewhere
    assert json.loads((out / "labels.json").read_text())["s2"] == ["bus", "person"]
    assert layout.labels["v2"] == [voc2012.CLASSES.index("cat")]
    # VOC masks first, SBD masks for the rest
    assert np.array_equal(load_mask(layout.mask_path("a1")), _mask(1))
    assert np.array_equal(load_mask(layout.mask_path("s2")), _mask(3))
    # only listed images, and nothing left of the extraction
    assert sorted(p.stem for p in (out / "JPEGImages").iterdir()) == sorted(set(OBJECTS) - {"x9"})
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "VOCtrainval_11-May-2012.tar", "benchmark.tgz",
    ]  # fmt: skip


@pytest.mark.bad_input
def test_prepare_rejects_a_wrong_checksum_and_leaves_nothing(tmp_path):
    voc, sbd = _archives()
    with LocalServer(Served(files={"/voc.tar": voc, "/sbd.tgz": sbd})) as url:
        params = _params(tmp_path, url, voc, sbd, sbd_md5="0" * 32)
        result = CliRunner().invoke(app, ["--params", str(params), "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert f"{url}/sbd.tgz: MD5" in result.output and "does not match" in result.output
    assert not (tmp_path / "d").exists()
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "VOCtrainval_11-May-2012.tar"
    ]


@pytest.mark.bad_input
def test_build_checks_the_train_aug_size(tmp_path):
    voc, sbd = _archives()
    with LocalServer(Served(files={"/voc.tar": voc, "/sbd.tgz": sbd})) as url:
        archives = [
            Archive(f"{url}/{name}", name, hashlib.md5(data).hexdigest())
            for name, data in [("voc.tar", voc), ("sbd.tgz", sbd)]
        ]
        out = VOCLayout(tmp_path / "dataset")
        with pytest.raises(DatasetError, match="train_aug has 5 images, expected 10582"):
            voc2012.build(*archives, tmp_path / "dl", out, voc2012.TRAIN_AUG_SIZE)
    assert not (tmp_path / "dl" / ".extracted").exists()


@pytest.mark.bad_input
def test_an_sbd_list_with_an_id_that_leaves_the_archive_is_refused(tmp_path):
    """SBD ids name the .mat read and the mask written: '../' in one must stop the build."""
    voc, _ = _archives()
    sbd_members = {f"{SBD}/cls/s1.mat": sbd_mat(_mask(2))}
    sbd_members[f"{SBD}/train.txt"] = b"s1\n../../../../escaped\n"
    sbd_members[f"{SBD}/val.txt"] = b"s1\n"
    sbd = tar(sbd_members, "w:gz")
    with LocalServer(Served(files={"/voc.tar": voc, "/sbd.tgz": sbd})) as url:
        params = _params(tmp_path, url, voc, sbd)
        result = CliRunner().invoke(app, ["--params", str(params), "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "benchmark_RELEASE/dataset/train.txt:2: image id '../../../../escaped'" in result.output
    assert not (tmp_path / "d").exists()
    assert not list(tmp_path.rglob("escaped*"))
