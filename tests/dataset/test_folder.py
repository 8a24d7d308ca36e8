"""A VOC-layout folder of the user's: imported when valid, one clear error per invalid case."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT
from PIL import Image
from typer.testing import CliRunner

from destseg.dataset.ids import DuplicateIdWarning
from destseg.dataset.layout import VOCLayout, load_mask, save_mask
from destseg.dataset.sources.folder import (
    DatasetError,
    import_folder,
    labels_from_xml,
    read_tags,
    scan,
)
from stages.prepare import app

CLASSES = ["background", "cat", "dog"]


def _folder(root):
    """Four images: two with masks, two with XML annotations only (one with both)."""
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 6), (i, 0, 0)).save(root / "JPEGImages" / f"im{i}.jpg")
    save_mask(root / "SegmentationClass" / "im0.png", np.full((6, 8), 2, np.uint8))
    mask = np.zeros((6, 8), np.uint8)
    mask[0] = 255
    mask[1:3] = 1
    save_mask(root / "SegmentationClass" / "im1.png", mask)
    for i, names in [(1, ["dog"]), (2, ["cat", "dog"]), (3, [])]:
        objects = "".join(f"<object><name>{n}</name></object>" for n in names)
        (root / "Annotations" / f"im{i}.xml").write_text(f"<annotation>{objects}</annotation>")
    (root / "ImageSets/Segmentation/train.txt").write_text("im1\nim2\nim3\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("im0\n")
    return root


def test_import_copies_the_listed_images_with_their_labels(tmp_path):
    root = _folder(tmp_path / "src")
    Image.new("RGB", (8, 6)).save(root / "JPEGImages" / "unlisted.jpg")
    out = VOCLayout(tmp_path / "out")
    assert import_folder(root, CLASSES, out) == {"train": 3, "val": 1}
    # the XML wins over the mask (im1 has a cat in its mask, a dog in its annotation)
    assert out.labels == {"im0": [2], "im1": [2], "im2": [1, 2], "im3": []}
    assert out.classes == CLASSES
    assert out.ids("train") == ["im1", "im2", "im3"]
    assert sorted(p.name for p in (out.root / "JPEGImages").iterdir()) == [
        "im0.jpg", "im1.jpg", "im2.jpg", "im3.jpg",
    ]  # fmt: skip
    assert np.array_equal(
        load_mask(out.mask_path("im1")), load_mask(root / "SegmentationClass/im1.png")
    )
    assert (root / "JPEGImages" / "im0.jpg").exists()  # copied, not moved


def test_labels_a_source_knows_replace_those_of_the_masks(tmp_path):
    """COCO's labels come from its annotations: an instance that smaller ones cover whole has
    no pixel in the mask and keeps its label."""
    root = _folder(tmp_path / "src")
    known = {"im0": [1, 2], "im1": [1], "im2": [2], "im3": [1], "unused": [2]}
    out = VOCLayout(tmp_path / "out")
    import_folder(root, CLASSES, out, labels=known)
    assert out.labels == {"im0": [1, 2], "im1": [1], "im2": [2], "im3": [1]}


def test_labels_from_xml(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(
        "<annotation><object><name> dog </name></object>"
        "<object><name>cat</name></object><object><name>dog</name></object></annotation>"
    )
    assert labels_from_xml(path, CLASSES) == [1, 2]


def _untagged_folder(root):
    """The four images with neither mask nor XML for im2 and im3: labels only from tags."""
    root = _folder(root)
    for i in (2, 3):
        (root / "Annotations" / f"im{i}.xml").unlink()
    return root


def test_tags_label_images_without_xml_or_mask_and_win_over_both(tmp_path):
    root = _untagged_folder(tmp_path / "src")
    tags = tmp_path / "tags.csv"
    # a spreadsheet's export: byte-order mark, CRLF, .jpg names, a quoted field, an extra column
    tags.write_bytes(
        "\ufeffimage,tags,note\r\nim2.jpg,dog cat,x\r\nim3,,\r\n"
        'im1,"cat",\r\nunlisted,dog,\r\n'.encode()
    )
    out = VOCLayout(tmp_path / "out")
    with pytest.warns(UserWarning, match=r"1 tagged images are in no list .*\(unlisted\)"):
        assert import_folder(root, CLASSES, out, tags=tags) == {"train": 3, "val": 1}
    # im1's tags win over its XML (dog) and mask (cat): the tags are what the user says
    assert out.labels == {"im0": [2], "im1": [1], "im2": [1, 2], "im3": []}
    as_json = tmp_path / "tags.json"
    as_json.write_text('{"im2": ["dog", "cat"], "im3": [], "im1": ["cat"]}')
    again = VOCLayout(tmp_path / "again")
    import_folder(root, CLASSES, again, tags=as_json)
    assert again.labels == out.labels
    as_jsonl = tmp_path / "metadata.jsonl"  # Hugging Face's imagefolder keeps its labels so
    as_jsonl.write_text(
        '{"image": "im2.jpg", "tags": ["dog", "cat"]}\n\n{"image": "im3", "tags": []}\n'
        '{"image": "im1", "tags": ["cat"]}\n'
    )
    thrice = VOCLayout(tmp_path / "thrice")
    import_folder(root, CLASSES, thrice, tags=as_jsonl)
    assert thrice.labels == out.labels


@pytest.mark.bad_input
def test_tags_that_disagree_with_the_images_mask_are_refused_naming_both(tmp_path):
    root = _untagged_folder(tmp_path / "src")
    tags = tmp_path / "tags.csv"
    tags.write_text("image,tags\nim2,dog\nim3,cat\nim1,dog\n")  # im1's mask holds a cat
    with pytest.raises(DatasetError, match=r"im1.png: the mask holds \['cat'\] and the tags "
                       r"file \(data.folder.tags\) says \['dog'\] for im1: correct one"):
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"), tags=tags)


@pytest.mark.bad_input
def test_an_image_in_another_format_is_named_not_skipped(tmp_path):
    root = _folder(tmp_path / "src")
    (root / "JPEGImages" / "im0.jpg").rename(root / "JPEGImages" / "im0.png")
    with pytest.raises(DatasetError, match=r"im0.png: the folder source reads JPEG images named "
                       r"<id>.jpg .*convert it to im0.jpg"):
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"))


def test_without_tags_an_image_with_neither_xml_nor_mask_names_the_setting(tmp_path):
    root = _untagged_folder(tmp_path / "src")
    with pytest.raises(DatasetError, match=r"im2.png: no mask, no im2.xml and no tags \(data"):
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"))


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.csv", "image,tags\nim2,dog\nim3,horse\n", r"t.csv, line 3: unknown class names "
         r"\['horse'\]; known: \['cat', 'dog'\]"),
        ("t.csv", "image,tags\nim2,dog\nim2.jpg,cat\n", r"t.csv, line 3: image 'im2' is "
         "tagged a second time"),
        ("t.csv", "file,labels\nim2,dog\n", r"t.csv: expected a header line with the columns"),
        ("t.csv", "image,tags\n../x,dog\n", r"t.csv, line 2: image id '../x' is not a plain"),
        ("t.json", '{"im2": "dog"}', r"t.json: expected an object of image ids to lists"),
        ("t.json", '{"im2": ["dog"', r"t.json: not valid JSON"),
        ("t.json", '{"im2": ["dingo"]}', r"t.json, image 'im2': unknown class names"),
        ("t.json", '{"im2": ["dog"], "im2": ["cat"]}', r"t.json, image 'im2': tagged a second"),
        ("t.txt", "im2 dog\n", r"t.txt: a tags file is .csv \(image,tags\), .json .* or .jsonl"),
        ("t.jsonl", '{"image": "im2", "tags": "dog"}\n', r't.jsonl, line 1: expected \{"image"'),
        ("t.jsonl", '\n{"image": "im2"', r"t.jsonl, line 2: not valid JSON"),
        ("t.jsonl", '{"image": "im2", "tags": ["dog"]}\n{"image": "im2.jpg", "tags": []}',
         r"t.jsonl, line 2: image 'im2' is tagged a second time"),
        ("t.csv", b"image,tags\n\xff\xfe,dog\n", r"t.csv: not a readable text file"),
    ],
)
def test_a_bad_tags_file_is_refused_naming_the_file_and_line(tmp_path, name, content, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DatasetError, match=expected):
        read_tags(path, CLASSES)


@pytest.mark.bad_input
def test_tags_of_images_no_list_names_are_left_out_with_a_warning(tmp_path):
    root = _untagged_folder(tmp_path / "src")
    tags = tmp_path / "tags.csv"
    tags.write_text("image,tags\nim2,dog\nim3,cat\nim2.png,dog\nimx,cat\n")
    with pytest.warns(UserWarning, match=r"tags.csv: 2 tagged images are in no list and are "
                      r"left out \(im2.png, imx\)"):
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"), tags=tags)


@pytest.mark.bad_input
def test_a_missing_tags_file_names_the_param(tmp_path):
    with pytest.raises(DatasetError, match=r"tags.csv: tags file not found \(data.folder.tags\)"):
        read_tags(tmp_path / "tags.csv", CLASSES)


def _break_missing_image(root):
    (root / "JPEGImages" / "im2.jpg").unlink()
    return "JPEGImages/im2.jpg: image not found"


def _break_unknown_label(root):
    save_mask(root / "SegmentationClass" / "im0.png", np.full((6, 8), 7, np.uint8))
    return r"SegmentationClass/im0.png: label values \[7\] are not class indices 0..2 or 255"


def _break_empty_list(root):
    (root / "ImageSets/Segmentation/val.txt").write_text("\n")
    return "ImageSets/Segmentation/val.txt: the list is empty"


def _break_no_lists(root):
    shutil.rmtree(root / "ImageSets")
    return "ImageSets/Segmentation: no image lists"


def _break_image_mode(root):
    Image.new("CMYK", (8, 6)).save(root / "JPEGImages" / "im3.jpg")
    return "JPEGImages/im3.jpg: image mode CMYK; expected one of RGB, L"


def _break_mask_mode(root):
    Image.new("RGB", (8, 6)).save(root / "SegmentationClass" / "im0.png")
    return "SegmentationClass/im0.png: a mask must be a palette or greyscale PNG, got mode RGB"


def _break_mask_size(root):
    save_mask(root / "SegmentationClass" / "im0.png", np.zeros((5, 8), np.uint8))
    return "SegmentationClass/im0.png: mask is 8x5, its image 8x6"


def _break_no_labels(root):
    (root / "ImageSets/Segmentation/val.txt").write_text("im0\nextra\n")
    Image.new("RGB", (8, 6)).save(root / "JPEGImages" / "extra.jpg")
    return "SegmentationClass/extra.png: no mask, no extra.xml and no tags"


def _break_unknown_class(root):
    (root / "Annotations" / "im3.xml").write_text(
        "<annotation><object><name>cow</name></object></annotation>"
    )
    return r"Annotations/im3.xml: unknown class names \['cow'\]"


def _break_unreadable_image(root):
    (root / "JPEGImages" / "im1.jpg").write_bytes(b"not a jpeg")
    return "JPEGImages/im1.jpg: not a readable image"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _break_truncated_jpeg(root):
    """The header is whole, so the image opens and reports its size; its pixels are cut."""
    noise = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((80, 60)).save(root / "JPEGImages" / "im2.jpg", quality=95)
    _truncate(root / "JPEGImages" / "im2.jpg")
    return "JPEGImages/im2.jpg: not a readable image .image file is truncated"


def _break_truncated_mask(root):
    mask = np.random.default_rng(0).integers(0, 3, (6, 8), dtype=np.uint8)
    save_mask(root / "SegmentationClass" / "im0.png", mask)
    _truncate(root / "SegmentationClass" / "im0.png")
    return "SegmentationClass/im0.png: not a readable mask"


def _break_traversal_id(root):
    """An id that climbs out of the dataset, to a file that exists there."""
    Image.new("RGB", (8, 6)).save(root.parent / "outside.jpg")
    (root / "ImageSets/Segmentation/train.txt").write_text("im1\n../../outside\n")
    return r"train.txt:2: image id '../../outside' is not a plain file name: it contains '/'"


def _break_backslash_id(root):
    (root / "ImageSets/Segmentation/val.txt").write_text("im0\n..\\..\\outside\n")
    return r"val.txt:2: image id .* is not a plain file name"


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "breaks",
    [
        _break_missing_image, _break_unknown_label, _break_empty_list, _break_no_lists,
        _break_image_mode, _break_mask_mode, _break_mask_size, _break_no_labels,
        _break_unknown_class, _break_unreadable_image, _break_truncated_jpeg,
        _break_truncated_mask, _break_traversal_id, _break_backslash_id,
    ],
)  # fmt: skip
def test_invalid_folders_fail_before_writing_anything(tmp_path, breaks):
    root = _folder(tmp_path / "src")
    message = breaks(root)
    with pytest.raises(DatasetError, match=message):
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_bad_image_in_id_order_is_reported_whatever_the_workers(tmp_path, workers):
    root = _folder(tmp_path / "src")
    (root / "JPEGImages" / "im1.jpg").write_bytes(b"broken")
    (root / "JPEGImages" / "im3.jpg").write_bytes(b"broken too")
    with pytest.raises(DatasetError, match=r"im1\.jpg: not a readable image"):
        scan(root, CLASSES, workers=workers)


@pytest.mark.bad_input
def test_repeated_ids_are_imported_once_with_a_warning(tmp_path):
    root = _folder(tmp_path / "src")
    (root / "ImageSets/Segmentation/train.txt").write_text("im1\nim2\nim1\nim3\n")
    out = VOCLayout(tmp_path / "out")
    with pytest.warns(DuplicateIdWarning, match="train.txt: 1 repeated ids dropped"):
        assert import_folder(root, CLASSES, out)["train"] == 3
    assert out.ids("train") == ["im1", "im2", "im3"]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "classes", [["background"], ["background", "cat", "cat"], ["cat", "dog"], ["cat", "background"]]
)
def test_class_lists_are_checked(tmp_path, classes):
    with pytest.raises(DatasetError, match="classes"):
        import_folder(_folder(tmp_path / "src"), classes, VOCLayout(tmp_path / "out"))


def _params(tmp_path, root, classes):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "folder"
    params["data"]["folder"] = {"root": str(root), "classes": classes}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_prepare_stage_imports_a_folder(tmp_path):
    params = _params(tmp_path, _folder(tmp_path / "src"), CLASSES)
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "prepare (folder): {'train': 3, 'val': 1} images, 2 classes" in result.output


@pytest.mark.bad_input
def test_prepare_stage_refuses_an_id_that_leaves_the_dataset(tmp_path):
    """The id ../../outside made prepare copy <root>/../../outside.jpg into the dataset and write
    outside the output folder; now it stops on the list, before reading or writing anything."""
    root = _folder(tmp_path / "user" / "src")
    Image.new("RGB", (8, 6)).save(tmp_path / "outside.jpg")
    (root / "ImageSets/Segmentation/train.txt").write_text("im1\n../../outside\n")
    out = tmp_path / "data" / "dataset"
    params = _params(tmp_path, root, CLASSES)
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(out)])
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and f"{root}/ImageSets/Segmentation/train.txt:2" in errors[0]
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before  # nothing written


@pytest.mark.bad_input
def test_prepare_stage_reports_a_broken_folder_in_one_line(tmp_path):
    root = _folder(tmp_path / "src")
    _break_unknown_label(root)
    params = _params(tmp_path, root, CLASSES)
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert "im0.png: label values [7]" in errors[0]
    assert "Traceback" not in result.output and not (tmp_path / "d").exists()


@pytest.mark.bad_input
def test_prepare_stage_needs_a_folder_root(tmp_path):
    params = _params(tmp_path, "", CLASSES)
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(tmp_path / "d")])
    assert result.exit_code == 1 and "data.folder.root" in result.output


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "linked",
    ["JPEGImages/im1.jpg", "SegmentationClass/im0.png", "Annotations/im2.xml"],
)
def test_links_out_of_the_folder_are_refused(tmp_path, linked):
    root = _folder(tmp_path / "src")
    outside = tmp_path / "elsewhere" / Path(linked).name
    outside.parent.mkdir()
    (root / linked).rename(outside)
    (root / linked).symlink_to(outside)
    with pytest.raises(DatasetError, match="a link to a file outside"):
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
def test_a_list_linked_to_another_file_is_refused_without_showing_its_content(tmp_path):
    root = _folder(tmp_path / "src")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:secret line\n")
    (root / "ImageSets/Segmentation/val.txt").unlink()
    (root / "ImageSets/Segmentation/val.txt").symlink_to(secret)
    with pytest.raises(DatasetError, match="a link to a file outside") as err:
        import_folder(root, CLASSES, VOCLayout(tmp_path / "out"))
    assert "secret line" not in str(err.value)


def test_links_inside_the_folder_are_followed(tmp_path):
    root = _folder(tmp_path / "src")
    (root / "JPEGImages/im3.jpg").unlink()
    (root / "JPEGImages/im3.jpg").symlink_to(root / "JPEGImages/im2.jpg")
    out = VOCLayout(tmp_path / "out")
    import_folder(root, CLASSES, out)
    assert not out.image_path("im3").is_symlink()
    assert out.image_path("im3").read_bytes() == (root / "JPEGImages/im2.jpg").read_bytes()


@pytest.mark.bad_input
@pytest.mark.parametrize("out", [".", "sub/dataset", ".."])
def test_prepare_refuses_an_output_that_overlaps_the_folder(tmp_path, out):
    root = _folder(tmp_path / "user" / "src")
    (root / "README").write_text("my notes")
    params = _params(tmp_path, root, CLASSES)
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    result = CliRunner().invoke(app, ["--params", str(params), "--out", str(root / out)])
    assert result.exit_code == 1
    assert "overlap" in result.stderr and "data.folder.root" in result.stderr
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before


@pytest.mark.bad_input
def test_binary_0_255_masks_are_refused_with_the_fix(tmp_path):
    """The most common format people bring: objects as 255, which VOC reads as 'ignore', so
    every image-level label would be empty and the classifier would learn nothing."""
    root = _folder(tmp_path / "src")
    shutil.rmtree(root / "Annotations")
    for i in range(4):
        mask = np.zeros((6, 8), np.uint8)
        mask[2:4, 2:5] = 255
        save_mask(root / "SegmentationClass" / f"im{i}.png", mask)
    with pytest.raises(DatasetError, match="no image of the list has a foreground label") as err:
        import_folder(root, ["background", "thing"], VOCLayout(tmp_path / "out"))
    assert "write its objects as 1" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_list_with_one_labelled_image_is_accepted(tmp_path):
    root = _folder(tmp_path / "src")
    assert import_folder(root, CLASSES, VOCLayout(tmp_path / "out"))["train"] == 3


@pytest.mark.bad_input
def test_an_image_over_pils_pixel_limit_is_refused_naming_it(tmp_path, monkeypatch):
    """PIL only warns (without the file name) between its limit and twice it, then decodes."""
    root = _folder(tmp_path / "src")
    Image.new("RGB", (30, 20)).save(root / "JPEGImages" / "im2.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 600 pixels: over, not twice over
    with pytest.raises(DatasetError, match=r"im2.jpg: not a readable image \(Image size"):
        scan(root, CLASSES, workers=1)
