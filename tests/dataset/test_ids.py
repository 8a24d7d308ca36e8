"""Image ids and list names: plain file stems only, checked wherever a list is read."""

import pytest
from pydantic import ValidationError

from destseg.dataset.ids import DuplicateIdWarning, IdError, check_id, read_id_list
from destseg.dataset.layout import VOCLayout
from stages.params.splits import SplitParams

BAD_IDS = [
    "../../something",
    "..",
    "a/b",
    "/etc/passwd",
    "a\\b",
    "..\\x",
    "C:x",
    "a\x00b",
    "a\tb",
    "x\x7f",
    " padded",
    "",
    "a..b",
    ".",  # would name the file ".png", which PIL cannot even tell the format of
    ".hidden",
    "x" * 201,  # with ".npz" and the temporary name around it, longer than a file name may be
    "é" * 101,  # 202 bytes in UTF-8
    "a\u2028b",  # a line separator: str.splitlines would cut the id in two
    "a\x85b",
]


@pytest.mark.bad_input
@pytest.mark.parametrize("image_id", BAD_IDS)
def test_ids_that_could_leave_a_folder_are_refused(image_id):
    with pytest.raises(IdError, match="not a plain file name"):
        check_id(image_id)


@pytest.mark.parametrize(
    "image_id", ["2007_000032", "im0", "a.b", "image-1", "été", "a b", "x" * 200]
)
def test_plain_stems_are_accepted(image_id):
    assert check_id(image_id) == image_id


@pytest.mark.bad_input
def test_a_list_names_the_file_and_line_of_a_bad_id(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("im0\n\n  im1  \n../../x\n")
    with pytest.raises(IdError, match=rf"{path}:4: image id '../../x' is not a plain file name"):
        read_id_list(path)


@pytest.mark.bad_input
def test_repeated_ids_are_dropped_with_a_warning_naming_the_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a\nb\na\nc\nb\n")
    with pytest.warns(
        DuplicateIdWarning, match=r"2 repeated ids dropped \(e.g. 'a' on lines 1 and 3"
    ):
        assert read_id_list(path) == ["a", "b", "c"]


@pytest.mark.bad_input
def test_a_binary_list_is_a_clear_error(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(IdError, match="not a text list of ids"):
        read_id_list(path)


@pytest.mark.bad_input
def test_the_layout_checks_every_id_it_turns_into_a_path(tmp_path):
    layout = VOCLayout(tmp_path)
    layout.write_split("train", ["ok", "../../outside"])
    with pytest.raises(IdError, match=r"train.txt:2: image id '../../outside'"):
        layout.ids("train")
    with pytest.raises(IdError):
        layout.image_path("../x")
    with pytest.raises(IdError):
        layout.mask_path("a/b")
    with pytest.raises(IdError, match="list name"):
        layout.split_path("../train")


@pytest.mark.bad_input
def test_a_missing_list_names_the_lists_the_dataset_has(tmp_path):
    layout = VOCLayout(tmp_path)
    layout.write_split("train", ["a"])
    layout.write_split("val", ["b"])
    with pytest.raises(
        FileNotFoundError, match=r"image list 'trainaug' not found \(the dataset has train, val"
    ):
        layout.ids("trainaug")
    with pytest.raises(FileNotFoundError, match="run the prepare stage first"):
        VOCLayout(tmp_path / "empty").ids("train")


@pytest.mark.bad_input
@pytest.mark.parametrize("name", ["../train", "a/b", ""])
def test_split_params_must_be_list_names(name):
    with pytest.raises(ValidationError, match=r"list name .* is not a plain file name"):
        SplitParams(train=name, val="val", score_cams="train")


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes("\ufeffa_001\r\nb_002\r\n".encode())
    assert read_id_list(path) == ["a_001", "b_002"]


@pytest.mark.bad_input
def test_an_id_missing_from_the_labels_names_labels_json(tmp_path):
    layout = VOCLayout(tmp_path)
    layout.write_metadata(["background", "cat"], {"a": [1]})
    assert layout.labels["a"] == [1] and "b" not in layout.labels
    with pytest.raises(ValueError, match=r"labels.json: no labels for image 'b'.*prepare"):
        layout.labels["b"]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("classes.json", '["background", "cat"', "classes.json: not valid JSON"),
        ("classes.json", '{"a": 1}', "classes.json: expected a list of class names"),
        ("labels.json", "\x00\x01", "labels.json: not valid JSON"),
        ("labels.json", '["a"]', "labels.json: expected a mapping of image ids"),
    ],
)
def test_damaged_metadata_names_its_file(tmp_path, file, text, expected):
    layout = VOCLayout(tmp_path)
    layout.write_metadata(["background", "cat"], {"a": [1]})
    (tmp_path / file).write_text(text)
    with pytest.raises(ValueError, match=expected):
        layout.labels  # noqa: B018  (reads classes.json too)


@pytest.mark.bad_input
def test_a_mask_of_another_size_than_what_is_scored_names_the_mask(tiny_layout):
    image_id = tiny_layout.ids("val")[0]
    mask = tiny_layout.ground_truth(image_id, (64, 64))
    with pytest.raises(ValueError, match=rf"{image_id}.png: a mask of 64x64 for an image of 32x"):
        tiny_layout.ground_truth(image_id, (32, 64))
    assert mask.shape == (64, 64)


@pytest.mark.bad_input
def test_a_line_separator_inside_an_id_is_refused_not_split(tmp_path):
    (tmp_path / "train.txt").write_text("first\nsec\u2028ond\n", encoding="utf-8")
    with pytest.raises(IdError, match=r"train\.txt:2: image id 'sec\\u2028ond'"):
        read_id_list(tmp_path / "train.txt")
