"""CAM files: every damaged or mismatched file is one error naming it."""

import numpy as np
import pytest

from destseg.cam.store import CamFileError, load_cam, save_cam


def _good(tmp_path):
    path = tmp_path / "a.npz"
    save_cam(path, [1, 3], np.full((2, 4, 5), 0.5, np.float32))
    return path


def test_a_good_file_passes_every_check(tmp_path):
    classes, cam = load_cam(_good(tmp_path), num_classes=4, size=(4, 5))
    assert classes.tolist() == [1, 3] and cam.shape == (2, 4, 5)


def _truncated(path):
    path.write_bytes(path.read_bytes()[:40])


def _arrays(**arrays):
    def write(path):
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    return write


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_truncated, "not a readable CAM file"),
        (lambda p: p.write_text("hello"), "not a CAM file (not the .npz archive make_cam"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "not the .npz archive make_cam writes"),
        (_arrays(cam=np.zeros((1, 4, 5))), "not a CAM file (arrays ['cam']"),
        (_arrays(classes=np.array([1]), cam=np.zeros((4, 5))), "maps of shape (4, 5) for 1"),
        (_arrays(classes=np.array([1, 2]), cam=np.zeros((1, 4, 5))), "for 2 classes"),
        (
            _arrays(classes=np.array([1], dtype=object), cam=np.zeros((1, 4, 5))),
            "it holds pickled objects, which are never loaded",
        ),
        (_arrays(classes=np.array([99]), cam=np.zeros((1, 4, 5))), "not distinct foreground"),
        (_arrays(classes=np.array([0]), cam=np.zeros((1, 4, 5))), "classes 1..3"),
        (_arrays(classes=np.array([2, 2]), cam=np.zeros((2, 4, 5))), "not distinct"),
        (_arrays(classes=np.array([1]), cam=np.zeros((1, 6, 5))), "maps of 6x5 for an image"),
        (_arrays(classes=np.array([1]), cam=np.full((1, 4, 5), np.nan)), "NaN or infinite"),
        (lambda p: p.unlink(), "CAM file not found"),
    ],
)
def test_damaged_files_are_one_error_naming_the_file(tmp_path, damage, expected):
    path = _good(tmp_path)
    damage(path)
    with pytest.raises(CamFileError) as err:
        load_cam(path, num_classes=4, size=(4, 5))
    assert str(err.value).startswith(str(path)) and expected in str(err.value)
    assert "allow_pickle" not in str(err.value)  # numpy's advice: load the pickle
