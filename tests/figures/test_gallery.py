"""Gallery figures: the overlay, the label colours, the layout, and which images are drawn."""

import numpy as np
import pytest

from destseg.figures.gallery import (
    TITLE_HEIGHT,
    cam_overlay,
    figure,
    heat_colours,
    legend_for,
    mask_colours,
)
from stages.cli import InputError
from stages.gallery import gallery_ids
from stages.params.gallery import GalleryParams


def test_the_overlay_leaves_the_image_where_the_cam_is_zero_and_is_hot_where_it_is_high():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    cam = np.zeros((32, 48), np.float32)
    cam[8:16, 10:20] = 1.0
    out = cam_overlay(image, cam, opacity=0.6)
    cold = cam == 0
    assert np.array_equal(out[cold], image[cold])
    hot = out[8:16, 10:20].astype(float)
    expected = 0.4 * image[8:16, 10:20] + 0.6 * np.array([255.0, 0.0, 0.0])
    assert np.abs(hot - expected).max() <= 0.5  # red, blended at the opacity
    assert (hot[..., 0] >= 0.6 * 255).all() and (hot[..., 2] <= 0.4 * 255 + 0.5).all()


def test_heat_colours_run_from_blue_to_red_and_clip():
    assert heat_colours(np.array([0.0, 1.0, -3.0, 7.0])).tolist() == [
        [0, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [255, 0, 0],
    ]
    with pytest.raises(ValueError, match="CAM of size"):
        cam_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5)))


def test_labels_take_the_voc_palette_colours():
    mask = np.array([[0, 1, 2, 255]], np.uint8)
    assert mask_colours(mask)[0].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [224, 224, 192]]


def test_a_figure_is_one_row_of_titled_panels_above_a_legend():
    panels = [("image", np.zeros((20, 40, 3), np.uint8)), ("truth", np.ones((40, 40, 3), np.uint8))]
    canvas = figure(panels, [("background", 0), ("disk", 1)], size=64)
    # longer side 64 each: 64 x 32 and 64 x 64, side by side, under a title, above a legend
    assert canvas.size == (128, 64 + 2 * TITLE_HEIGHT + 4)
    pixels = np.asarray(canvas)
    assert (pixels[TITLE_HEIGHT + 40, 10] == 255).all()  # below the shorter panel: blank
    assert (pixels[TITLE_HEIGHT + 10, 70] == 1).all()  # inside the second panel
    assert legend_for([2, 0, 255, 2], ["background", "disk", "square"]) == [
        ("background", 0),
        ("square", 2),
        ("ignored", 255),
    ]


def test_a_long_legend_wraps_into_rows_inside_the_figure():
    """COCO: a dozen classes with long names under two 64-pixel panels."""
    from destseg.figures.gallery import LEGEND_ROW, legend_rows

    legend = [("background", 0)] + [(f"baseball glove {i}", i) for i in range(1, 13)]
    panels = [("image", np.zeros((64, 64, 3), np.uint8))] * 2
    rows = legend_rows(legend, 128)
    assert len(rows) == 13  # each long name alone in its row: 13 + 6 * 16 = 109 pixels
    assert [entry[1:] for row in rows for entry in row] == legend  # in order, none lost
    for row in rows:
        assert row[-1][0] + 13 + 6 * len(row[-1][1]) <= 126  # inside the figure
    canvas = figure(panels, legend, size=64)
    assert canvas.size == (128, TITLE_HEIGHT + 64 + 13 * LEGEND_ROW + 4)
    assert len(legend_rows([("cat", 1), ("dog", 2)], 128)) == 1  # short ones share a row


def _params(**changes):
    return GalleryParams(**{"images": 3, "seed": 0, "ids": [], "size": 64, **changes})


def test_the_sample_is_seeded_in_list_order_and_a_fixed_list_wins():
    candidates = [f"img_{i}" for i in range(20)]
    first = gallery_ids(_params(), candidates)
    assert first == gallery_ids(_params(), candidates) and len(first) == 3
    assert first == sorted(first, key=candidates.index)
    assert gallery_ids(_params(seed=1), candidates) != first
    assert len(gallery_ids(_params(images=50), candidates)) == 20
    assert gallery_ids(_params(ids=["img_7", "img_2"]), candidates) == ["img_7", "img_2"]


@pytest.mark.bad_input
def test_a_fixed_list_outside_the_scored_images_is_refused():
    expected = r"gallery\.ids: img_99 not among the images drawn from \(splits\.score_cams"
    with pytest.raises(InputError, match=expected):
        gallery_ids(_params(ids=["img_1", "img_99"]), ["img_1", "img_2"])
    with pytest.raises(ValueError, match="image id"):
        _params(ids=["../escape"])


def test_the_label_overlay_leaves_the_background_and_blends_each_class_colour():
    from destseg.figures.gallery import label_overlay

    image = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[0, 1], [0, 2]], np.uint8)
    shown = label_overlay(image, labels)
    assert (shown[labels == 0] == 100).all()
    # VOC's class 1 is (128, 0, 0), class 2 (0, 128, 0): 0.45 x 100 + 0.55 x colour, rounded
    assert shown[0, 1].tolist() == [115, 45, 45] and shown[1, 1].tolist() == [45, 115, 45]


def test_the_held_out_rows_are_the_worst_images_of_evaluates_table(tmp_path):
    from stages.gallery import worst_images

    table = tmp_path / "per_image.csv"
    table.write_text(
        "image,miou,pixel_accuracy,classes\n007,0.1,0.5,cat\nb,0.2,0.9,\nc,0.9,0.99,dog\n"
    )
    assert worst_images(table, _params(val_images=2)) == [("007", 0.1), ("b", 0.2)]
    assert worst_images(table, _params(val_images=9))[-1] == ("c", 0.9)
    assert worst_images(tmp_path / "absent.csv", _params(val_images=0)) == []  # not read


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id,score\na,0.5\n", r"per_image.csv: not evaluate's per-image table"),
        ("image,miou\n../x,0.5\n", r"image id '../x' is not a plain file name"),
        ("image,miou\n,0.5\n", r"image id '' is not a plain file name: it is empty"),
        ("image,miou\na,\n", r"per_image.csv: not evaluate's per-image table"),
    ],
)
def test_a_table_that_is_not_evaluates_is_refused(tmp_path, text, expected):
    from stages.gallery import worst_images

    (tmp_path / "per_image.csv").write_text(text)
    with pytest.raises((InputError, ValueError), match=expected):
        worst_images(tmp_path / "per_image.csv", _params(val_images=1))
