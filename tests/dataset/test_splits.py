"""The lists a CAM stage reads: scored and tuning images inside the training list, apart from
each other, and the layout's smallest image."""

import pytest
from PIL import Image

from destseg.dataset.layout import VOCLayout
from destseg.dataset.splits import SplitError, cam_ids, tuning_ids


@pytest.fixture
def layout(tmp_path) -> VOCLayout:
    layout = VOCLayout(tmp_path)
    layout.write_split("train", ["a", "b", "c", "d"])
    layout.write_split("scored", ["a", "b"])
    layout.write_split("tuning", ["c"])
    layout.write_split("val", ["e"])
    return layout


def test_cam_ids_are_the_training_list_and_its_scored_part(layout):
    assert cam_ids(layout, "train", "scored") == (["a", "b", "c", "d"], {"a", "b"})


def test_the_tuning_list_lies_inside_train_and_outside_the_scored_images(layout):
    assert tuning_ids(layout, "train", "scored", "tuning", wanted_by="cam.threshold") == ["c"]
    assert tuning_ids(layout, "train", "scored", None, wanted_by=None) == []


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("train", "scored", "tune", "expected"),
    [
        ("train", "val", None, r"splits.score_cams: 1 images of .*val.txt are not in splits.train"),
        ("train", "scored", "val", r"splits.tune: 1 images of .*val.txt are not in splits.train"),
        ("train", "scored", "scored", r"splits.tune: 2 images .* in splits.score_cams .* oracle"),
        ("train", "scored", None, r"cam.threshold: auto needs splits.tune"),
    ],
)
def test_lists_that_break_the_rules_are_refused_naming_the_param(
    layout, train, scored, tune, expected
):
    with pytest.raises(SplitError, match=expected):
        cam_ids(layout, train, scored)
        tuning_ids(layout, train, scored, tune, wanted_by="cam.threshold")


def test_the_smallest_side_comes_from_the_image_headers(layout):
    (layout.root / "JPEGImages").mkdir()
    for image_id, size in {"a": (40, 30), "b": (20, 50)}.items():
        Image.new("RGB", size).save(layout.image_path(image_id))
    assert layout.smallest_side(["a", "b"]) == 20
    assert layout.smallest_side(["a"]) == 30
