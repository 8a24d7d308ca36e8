"""The lists a CAM stage reads: scored and tuning images inside the training list, apart from
each other, and the layout's smallest image."""

import pytest
from PIL import Image

from destseg.dataset.layout import VOCLayout
from destseg.dataset.splits import SplitError, cam_ids, check_lists, tuning_ids


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


def test_without_a_scored_list_every_image_is_labelled_and_none_scored(layout):
    """``splits.score_cams: null``: training images with tags and no masks; a tuning list may
    still choose the thresholds, and no list is an oracle's."""
    assert cam_ids(layout, "train", None) == (["a", "b", "c", "d"], set())
    assert tuning_ids(layout, "train", None, "scored", wanted_by="cam.threshold") == ["a", "b"]
    _mask(layout, "a", "b", "e")
    check_lists(layout, "train", "val", None, "scored")  # no error
    with pytest.raises(SplitError, match=r"splits\.tune: 1 of the 1 images of list 'tuning'"):
        check_lists(layout, "train", "val", None, "tuning")


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


def _mask(layout, *ids):
    layout.mask_path("x").parent.mkdir(exist_ok=True)
    for image_id in ids:
        layout.mask_path(image_id).write_bytes(b"")  # only their presence is checked


def test_lists_that_keep_the_rules_and_have_masks_pass(layout):
    _mask(layout, "a", "b", "c", "e")
    check_lists(layout, "train", "val", "scored", "tuning")
    check_lists(layout, "train", "val", "scored", None)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("lists", "masked", "expected"),
    [
        (("train", "val", "report", "tuning"), "abce", r"splits.score_cams: .*report.txt: image "
         r"list 'report' not found \(the dataset has scored, train, tuning, val\)"),
        (("train", "val", "scored", "tune"), "abce", r"splits.tune: .* list 'tune' not found"),
        (("train", "val", "train", None), "abce", r"splits.score_cams: 1 of the 4 images of list "
         r"'train' have no mask \(first: .*d.png\).*name a list of images with masks"),
        (("train", "val", "scored", "tuning"), "abc", r"splits.val: 1 of the 1 images"),
        (("train", "val", "scored", "tuning"), "abe", r"splits.tune: 1 of the 1 images"),
        (("train", "val", "val", None), "abcde", r"splits.score_cams: 1 images .* not in splits"),
        (("train", "val", "scored", "scored"), "abcde", r"splits.tune: .* oracle"),
    ],
)
def test_every_list_is_checked_at_once_naming_the_param(layout, lists, masked, expected):
    _mask(layout, *masked)
    with pytest.raises(SplitError, match=expected):
        check_lists(layout, *lists)
