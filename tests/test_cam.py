import numpy as np
import pytest
import torch
import torch.nn.functional as F

from destseg.cam import ThresholdSweep, multiscale_cam, normalize_per_class
from destseg.cam_store import cam_to_label, load_cam, save_cam
from destseg.models.classifier import Classifier


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Classifier("resnet18", num_classes=4, pretrained=False, output_stride=16).eval()


def test_cam_is_exact_for_the_logits(model):
    """The class score is the spatial mean of the raw CAM: the classifier is linear after GAP."""
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(
            model(x).numpy(), model.cam(x).mean(dim=(-2, -1)).numpy(), rtol=1e-4, atol=1e-5
        )


def test_multiscale_flip_aggregation_matches_a_direct_computation(model):
    image = torch.randn(3, 48, 64)
    classes, scales = [2, 4], [1.0, 0.5, 1.5]
    total = torch.zeros(2, 48, 64)
    with torch.no_grad():
        for scale in scales:
            x = F.interpolate(
                image[None], size=(round(48 * scale), round(64 * scale)), mode="bilinear"
            )
            for flipped in (False, True):
                xi = x.flip(-1) if flipped else x
                cam = F.relu(model.cam(xi))[:, [1, 3]]
                cam = cam.flip(-1) if flipped else cam
                total += F.interpolate(cam, size=(48, 64), mode="bilinear")[0]
    expected = total / total.amax(dim=(-2, -1), keepdim=True)
    got = multiscale_cam(model, image, classes, scales, flip=True)
    assert got.shape == (2, 48, 64)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_normalisation_puts_each_class_maximum_at_one(model):
    cam = multiscale_cam(model, torch.randn(3, 40, 40), [1, 2, 3], [1.0], flip=False)
    assert cam.min() >= 0
    np.testing.assert_allclose(cam.amax(dim=(-2, -1)).numpy(), 1.0, atol=1e-3)
    assert normalize_per_class(torch.zeros(1, 3, 3)).abs().max() == 0


def test_cam_to_label_thresholds_with_a_background_plane():
    cam = np.array([[[0.1, 0.5, 0.9]], [[0.3, 0.6, 0.2]]])
    classes = np.array([2, 5])
    np.testing.assert_array_equal(cam_to_label(cam, classes, 0.25), [[5, 5, 2]])
    np.testing.assert_array_equal(cam_to_label(cam, classes, 0.95), [[0, 0, 0]])
    assert cam_to_label(np.zeros((0, 2, 2)), np.array([]), 0.2).shape == (2, 2)


def test_threshold_sweep_matches_single_thresholds():
    rng = np.random.default_rng(0)
    cam, gt = rng.uniform(size=(2, 8, 8)), rng.integers(0, 3, size=(8, 8))
    sweep = ThresholdSweep(3, [0.2, 0.6])
    sweep.update(gt, cam, np.array([1, 2]))
    table = sweep.table()
    assert list(table["threshold"]) == [0.2, 0.6]
    assert table["fg_recall"].iloc[0] >= table["fg_recall"].iloc[1]


def test_cam_file_roundtrip_in_float16(tmp_path):
    cam = np.random.default_rng(0).uniform(size=(2, 5, 6)).astype(np.float32)
    save_cam(tmp_path / "a.npz", [3, 7], cam)
    classes, loaded = load_cam(tmp_path / "a.npz")
    np.testing.assert_array_equal(classes, [3, 7])
    np.testing.assert_allclose(loaded, cam, atol=1e-3)
