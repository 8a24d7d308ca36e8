import numpy as np
import pytest
from PIL import Image

from destseg.figures.confusion import (
    CELL,
    EMPTY_ROW,
    cell_box,
    confusion_figure,
    normalised_confusion,
    save_confusion_figure,
    share_colour,
)

CLASSES = ["background", "cat", "dog"]
# rows: ground truth, columns: label. The dog is absent from the ground truth.
CONFUSION = np.array([[6, 2, 0], [1, 0, 3], [0, 0, 0]])


def test_each_row_is_divided_by_its_total():
    shares = normalised_confusion(CONFUSION)
    np.testing.assert_allclose(shares[0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(shares[1], [0.25, 0.0, 0.75])
    assert np.isnan(shares[2]).all()  # absent class: no share, not "all missed"


def test_cell_colours_follow_the_shares():
    picture = np.asarray(confusion_figure(CONFUSION, CLASSES))

    def centre(row, column):
        left, top, _, bottom = cell_box(row, column, CLASSES)
        return tuple(int(c) for c in picture[(top + bottom) // 2, left + 1])

    assert centre(0, 0) == share_colour(0.75)
    assert centre(0, 1) == centre(1, 0) == share_colour(0.25)
    assert centre(1, 1) == (255, 255, 255)  # 0 % of the cats labelled cat
    assert centre(2, 0) == centre(2, 2) == EMPTY_ROW
    # darker for a larger share
    assert sum(share_colour(0.75)) < sum(share_colour(0.25)) < sum(share_colour(0.0))


def test_a_matrix_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="3 classes"):
        confusion_figure(np.ones((2, 2)), CLASSES)


def test_the_figure_is_written_as_a_png(tmp_path):
    path = tmp_path / "confusion.png"
    save_confusion_figure(path, CONFUSION, CLASSES)
    with Image.open(path) as image:
        assert image.format == "PNG"
        _, _, right, bottom = cell_box(2, 2, CLASSES)
        assert image.width > right and image.height > bottom
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


def test_coco_s_81_classes_keep_their_cells_and_names_inside_the_figure():
    """81 x 81 cells of CELL pixels (room for "100"), each row named, the last cell inside."""
    classes = ["background"] + [f"class number {i}" for i in range(1, 81)]
    canvas = confusion_figure(np.eye(81) * 10 + 1, classes)
    left, top, right, bottom = cell_box(80, 80, classes)
    assert (right - left + 1, bottom - top + 1) == (CELL, CELL)
    assert right < canvas.width and bottom < canvas.height
    assert canvas.width == cell_box(0, 0, classes)[0] + 81 * CELL + 4
    pixels = np.asarray(canvas)
    assert (pixels[top + 2, left + 2] != 255).any()  # the diagonal cell is shaded
