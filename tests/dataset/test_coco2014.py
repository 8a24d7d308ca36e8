"""The coco2014 source: the mask rule against hand-drawn expectations, the instances file's
checks, and the whole build from COCO-shaped archives served on 127.0.0.1."""

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from coco_archives import CLASSES, coco_shaped_archives, uncompressed_rle, zip_bytes
from http_server import LocalServer, Served

from destseg.dataset.layout import VOCLayout, load_image, load_mask
from destseg.dataset.sources import coco2014
from destseg.dataset.sources.coco2014 import ImageRecord, Instance, read_instances, semantic_mask
from destseg.dataset.sources.download import Archive
from destseg.dataset.sources.folder import DatasetError


def box(x0, y0, x1, y1):
    """A rectangle polygon: pycocotools fills columns x0..x1-1 and rows y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_the_smallest_instance_is_drawn_first_and_keeps_its_pixels():
    crowd = np.zeros((6, 8), dtype=bool)
    crowd[5, :] = True  # the bottom row, 8 pixels: smaller than the large box
    record = ImageRecord(
        "COCO_train2014_000000000001",
        "COCO_train2014_000000000001.jpg",
        8,
        6,
        (
            Instance(1, 3, 36.0, box(1, 0, 7, 6)),  # large, 6 x 6, first in the file
            Instance(2, 5, 4.0, box(2, 1, 4, 3)),  # small, inside the large one
            Instance(3, 1, 8.0, uncompressed_rle(crowd)),  # crowd region: drawn, class 1
            Instance(4, 7, 4.0, box(5, 1, 7, 3)),  # same area as the small one: file order
            Instance(5, 2, 4.0, box(6, 1, 8, 3)),  # ties with 4 and comes later: loses x = 6
        ),
    )
    expected = np.array(
        [
            [0, 3, 3, 3, 3, 3, 3, 0],
            [0, 3, 5, 5, 3, 7, 7, 2],
            [0, 3, 5, 5, 3, 7, 7, 2],
            [0, 3, 3, 3, 3, 3, 3, 0],
            [0, 3, 3, 3, 3, 3, 3, 0],
            [1, 1, 1, 1, 1, 1, 1, 1],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(semantic_mask(record), expected)
    assert record.labels == [1, 2, 3, 5, 7]


def _instances_file(tmp_path, **changes):
    """A small instances file (two images, the second without annotations) with ``changes``
    applied to its first annotation (or to the whole file with ``content``)."""
    annotation = {
        "id": 7,
        "image_id": 9,
        "category_id": 90,
        "segmentation": box(1, 1, 4, 4),
        "area": 9.0,
        "iscrowd": 0,
    }
    annotation |= changes
    content = {
        "images": [
            {"id": 9, "file_name": "COCO_val2014_000000000009.jpg", "width": 8, "height": 6},
            {"id": 3, "file_name": "COCO_val2014_000000000003.jpg", "width": 8, "height": 6},
        ],
        "annotations": [annotation],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}],
    }
    path = tmp_path / "instances_val2014.json"
    path.write_text(json.dumps(content))
    return path


def test_categories_in_id_order_and_images_without_annotations_dropped(tmp_path):
    classes, records = read_instances(_instances_file(tmp_path))
    assert classes == ["background", "person", "toothbrush"]
    assert [r.image_id for r in records] == ["COCO_val2014_000000000009"]
    assert records[0].labels == [2] and records[0].instances[0].annotation == 7


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_id": 4}, "annotation 7: image_id 4 is not in 'images'"),
        ({"category_id": 12}, "annotation 7: category_id 12 is not in 'categories'"),
        ({"segmentation": box(20, 1, 30, 4)}, "annotation 7: a polygon outside its image"),
        ({"segmentation": [[1, 2, 3]]}, "annotation 7: a polygon must be a list of x, y pairs"),
        ({"segmentation": {"counts": [48], "size": [5, 8]}}, "annotation 7: an RLE of size"),
        ({"area": "big"}, "annotation 7: 'area' is 'big', not a number"),
        ({"image_id": [9]}, "annotation 7: 'image_id' is \\[9\\], not a whole number"),
        ({"segmentation": box(1e12, 1, 4, 4)}, "annotation 7: a polygon outside its image"),
        (
            {"segmentation": {"counts": [3, 3], "size": [6, 8]}},
            "annotation 7: RLE counts must be whole numbers >= 0 adding up to the image's 48",
        ),
        (
            {"segmentation": {"counts": [50, -2], "size": [6, 8]}},
            "annotation 7: RLE counts must be whole",
        ),
        (
            {"segmentation": {"counts": [40.5, 7.5], "size": [6, 8]}},
            "annotation 7: RLE counts must be whole",
        ),
        (
            {"segmentation": {"counts": "xx", "size": [6, 8]}},
            "annotation 7: (not a compressed RLE|RLE counts)",
        ),
    ],
)
def test_a_bad_annotation_is_named_with_its_file(tmp_path, changes, message):
    path = _instances_file(tmp_path, **changes)
    with pytest.raises(DatasetError, match=f"instances_val2014.json: {message}"):
        read_instances(path)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a COCO instances file"),
        (
            '{"categories": [{"id": 1, "name": "person"}], "images": {}}',
            "not a COCO instances file: no list of 'images'",
        ),
        ('{"images": [], "annotations": []}', "not a COCO instances file: no list of 'categories'"),
    ],
)
def test_a_file_that_is_not_coco_json_is_named(tmp_path, text, message):
    path = tmp_path / "instances_train2014.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=f"instances_train2014.json: {message}"):
        read_instances(path)


def _archives(url, data):
    return {
        "train": Archive(f"{url}/train2014.zip", "train2014.zip", _md5(data.train)),
        "val": Archive(f"{url}/val2014.zip", "val2014.zip", _md5(data.val)),
        "annotations": Archive(
            f"{url}/annotations.zip", "annotations_trainval2014.zip", _md5(data.annotations)
        ),
    }


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _served(data):
    return Served(
        files={
            "/train2014.zip": data.train,
            "/val2014.zip": data.val,
            "/annotations.zip": data.annotations,
        }
    )


def test_the_build_downloads_draws_the_masks_and_writes_the_lists(tmp_path):
    data = coco_shaped_archives(train_images=3, val_images=2)
    out = VOCLayout(tmp_path / "dataset")
    with LocalServer(_served(data)) as url:
        counts = coco2014.build(_archives(url, data), tmp_path / "downloads", out, False, 2)
    tune = data.train_ids[:: coco2014.TUNE_EVERY]
    assert counts == {"train": 3, "val": 2, "tune": len(tune), "report": 3 - len(tune)}
    assert out.ids("train") == data.train_ids and out.ids("val") == data.val_ids
    assert out.ids("tune") == tune and not set(out.ids("report")) & set(tune)
    assert out.classes == CLASSES and len(CLASSES) == 81
    assert out.labels == data.labels
    first = data.train_ids[0]  # classes of category ids 1 and 90: indices 1 and 80, and a crowd
    assert out.labels[first] == [1, 80]
    for image_id in data.train_ids + data.val_ids:
        image, mask = load_image(out.image_path(image_id)), load_mask(out.mask_path(image_id))
        assert mask.shape == image.shape[:2]
        # every instance drawn: a smaller polygon cannot cover a larger one whole
        assert set(np.unique(mask)) - {0} == set(out.labels[image_id])
    sizes = {load_image(out.image_path(i)).shape[:2] for i in data.train_ids}
    assert sizes == {(480, 640), (640, 480), (427, 640)}  # COCO's shapes, portrait included
    bottom = load_mask(out.mask_path(first))[-1]
    assert (bottom[: 640 // 3] == 1).all()  # the crowd region is drawn, as class 1
    assert not list((tmp_path / "downloads").glob(".extracted*"))
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "annotations_trainval2014.zip",
        "train2014.zip",
        "val2014.zip",
    ]  # kept for the next build
    # the images without annotations are not in the dataset
    assert len(list((out.root / "JPEGImages").iterdir())) == 5


@pytest.mark.bad_input
def test_official_archives_must_hold_the_official_counts(tmp_path):
    data = coco_shaped_archives(train_images=1, val_images=1)
    with LocalServer(_served(data)) as url, pytest.raises(DatasetError, match="expected 82081"):
        coco2014.build(_archives(url, data), tmp_path / "d", VOCLayout(tmp_path / "o"), True, 1)
    assert not (tmp_path / "o").exists()


def _file_archives(tmp_path, data):
    """The archives as files, fetched by file:// URLs (no server needed to test a refusal)."""
    archives = {}
    for key, blob in (("train", data.train), ("val", data.val), ("annotations", data.annotations)):
        path = tmp_path / "served" / f"{key}.zip"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(blob)
        archives[key] = Archive(path.as_uri(), f"{key}.zip", _md5(blob))
    return archives


@pytest.mark.bad_input
def test_a_truncated_image_is_named_and_nothing_is_written(tmp_path):
    data = coco_shaped_archives(train_images=2, val_images=1)
    with zipfile.ZipFile(io.BytesIO(data.train)) as bundle:
        members = {name: bundle.read(name) for name in bundle.namelist()}
    victim = f"train2014/{data.train_ids[0]}.jpg"
    members[victim] = members[victim][:2000]
    broken = type(data)(zip_bytes(members), *list(vars(data).values())[1:])
    out = VOCLayout(tmp_path / "dataset")
    with pytest.raises(DatasetError, match=f"{data.train_ids[0]}.jpg: not a readable image"):
        coco2014.build(_file_archives(tmp_path, broken), tmp_path / "d", out, False, 1)
    assert not out.root.exists() and not list((tmp_path / "d").glob(".extracted*"))


@pytest.mark.bad_input
def test_an_image_the_annotations_name_but_the_archive_lacks_is_named(tmp_path):
    data = coco_shaped_archives(train_images=2, val_images=1)
    with zipfile.ZipFile(io.BytesIO(data.val)) as bundle:
        members = {n: bundle.read(n) for n in bundle.namelist() if data.val_ids[0] not in n}
    broken = type(data)(data.train, zip_bytes(members), *list(vars(data).values())[2:])
    with pytest.raises(DatasetError, match=f"val2014/{data.val_ids[0]}.jpg is missing"):
        coco2014.build(
            _file_archives(tmp_path, broken), tmp_path / "d", VOCLayout(tmp_path / "o"), False, 1
        )


def test_compressed_rle_counts_decode_as_pycocotools_encodes_them():
    from pycocotools import mask as coco_mask

    from destseg.dataset.sources.coco2014 import rle_counts

    rng = np.random.default_rng(3)
    mask = np.asfortranarray(rng.random((37, 53)) > 0.7).astype(np.uint8)
    encoded = coco_mask.encode(mask)
    runs = rle_counts(encoded["counts"].decode())
    flat, value, start = mask.flatten(order="F"), 0, 0
    for run in runs:  # the runs alternate from background, over the column-major pixels
        assert (flat[start : start + run] == value).all()
        start, value = start + run, 1 - value
    assert start == mask.size
    record = ImageRecord(
        "i",
        "i.jpg",
        53,
        37,
        (Instance(1, 4, 1.0, {**encoded, "counts": encoded["counts"].decode()}),),
    )
    np.testing.assert_array_equal(semantic_mask(record), mask * 4)


def test_a_polygon_of_two_points_is_dropped_not_taken_for_a_box(tmp_path):
    path = _instances_file(tmp_path, segmentation=[[1, 1, 3, 3], *box(1, 1, 4, 4)])
    _, records = read_instances(path)
    assert records[0].instances[0].segmentation == box(1, 1, 4, 4)
    assert semantic_mask(records[0]).sum() == 9 * 2  # the 3 x 3 box, class 2


@pytest.mark.bad_input
def test_more_categories_than_a_mask_can_hold_are_refused(tmp_path):
    path = _instances_file(tmp_path)
    content = json.loads(path.read_text())
    content["categories"] = [{"id": i, "name": f"c{i}"} for i in range(1, 256)]
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetError, match="255 categories; 1 to 254 can be classes"):
        read_instances(path)


@pytest.mark.bad_input
def test_an_image_of_another_size_than_its_record_is_named(tmp_path):
    from PIL import Image

    layout = VOCLayout(tmp_path)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    record = ImageRecord("a", "a.jpg", 8, 6, (Instance(1, 1, 9.0, box(1, 1, 4, 4)),))
    Image.new("RGB", (6, 8)).save(layout.image_path("a"))
    with pytest.raises(DatasetError, match=r"a\.jpg: 6x8, but its annotation record says 8x6"):
        coco2014.write_mask(record, tmp_path)
    assert not layout.mask_path("a").exists()


@pytest.mark.bad_input
def test_an_image_in_both_splits_is_refused(tmp_path):
    data = coco_shaped_archives(train_images=2, val_images=1)
    with zipfile.ZipFile(io.BytesIO(data.annotations)) as bundle:
        members = {n: bundle.read(n) for n in bundle.namelist()}
    val = json.loads(members["annotations/instances_val2014.json"])
    train = json.loads(members["annotations/instances_train2014.json"])
    val["images"][0]["file_name"] = train["images"][0]["file_name"]
    members["annotations/instances_val2014.json"] = json.dumps(val).encode()
    broken = type(data)(data.train, data.val, zip_bytes(members), *list(vars(data).values())[3:])
    with pytest.raises(DatasetError, match="1 images also in annotations/instances_train2014"):
        coco2014.build(
            _file_archives(tmp_path, broken), tmp_path / "d", VOCLayout(tmp_path / "o"), False, 1
        )


@pytest.mark.bad_input
def test_a_bad_instances_file_is_named_by_its_archive_and_member(tmp_path):
    """Not by the scratch file it was extracted to, which is gone when the error shows."""
    data = coco_shaped_archives(train_images=2, val_images=1)
    with zipfile.ZipFile(io.BytesIO(data.annotations)) as bundle:
        members = {n: bundle.read(n) for n in bundle.namelist()}
    members["annotations/instances_val2014.json"] = b"{not json"
    broken = type(data)(data.train, data.val, zip_bytes(members), *list(vars(data).values())[3:])
    archives = _file_archives(tmp_path, broken)
    with pytest.raises(DatasetError) as err:
        coco2014.build(archives, tmp_path / "d", VOCLayout(tmp_path / "o"), False, 1)
    assert str(err.value).startswith(
        f"{tmp_path / 'd' / 'annotations.zip'} (member annotations/instances_val2014.json): "
        "not valid JSON"
    )
    assert ".extracted" not in str(err.value)
