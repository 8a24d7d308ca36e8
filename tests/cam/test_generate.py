import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from destseg.cam.generate import ThresholdSweep, multiscale_cams, size_batches
from destseg.cam.normalize import normalize_per_class
from destseg.cam.store import cam_to_label, load_cam, save_cam
from destseg.cam.strided import rescale_image
from destseg.evaluation.metrics import (
    confusion_matrix,
    foreground_precision_recall,
    segmentation_scores,
)
from destseg.models.classifier import Classifier


def one_cam(model, image, classes, scales, flip):
    """The CAMs (k, H, W) of one image (3, H, W) for its ``classes``."""
    return multiscale_cams(model, image[None], [classes], scales, flip)[0]


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
    image = torch.randn(3, 40, 56)  # sides that the stride (16) does not divide
    classes, scales = [2, 4], [1.0, 0.5, 1.5]
    total = torch.zeros(2, 40, 56)
    with torch.no_grad():
        for scale in scales:
            size = (round(40 * scale), round(56 * scale))
            x = F.interpolate(image[None], size=size, mode="bicubic", antialias=True)
            x = image[None] if scale == 1.0 else x
            for flipped in (False, True):
                xi = x.flip(-1) if flipped else x
                cam = F.relu(model.cam(xi))[:, [1, 3]]
                cam = cam.flip(-1) if flipped else cam
                total += F.interpolate(cam, size=(48, 64), mode="bilinear")[0, :, :40, :56]
    expected = total / total.amax(dim=(-2, -1), keepdim=True)
    got = one_cam(model, image, classes, scales, flip=True)
    assert got.shape == (2, 40, 56)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


class _PoolingCam(torch.nn.Module):
    """A classifier whose CAM is known: the first input channel averaged over 16 x 16 cells
    (the last cells partial, as in a network with stride-2 layers)."""

    encoder = type("Encoder", (), {"output_stride": 16})()

    def cam(self, x):
        return F.avg_pool2d(x[:, :1], 16, ceil_mode=True)


def _centre(weights: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(
        torch.arange(weights.shape[0], dtype=torch.float64),
        torch.arange(weights.shape[1], dtype=torch.float64),
        indexing="ij",
    )
    weights = weights.double()
    return float((ys * weights).sum() / weights.sum()), float((xs * weights).sum() / weights.sum())


def test_the_cam_stays_over_the_pixels_its_cells_saw():
    """VOC's 375 x 500 at stride 16: 24 x 32 cells cover 384 x 512 px. A bright square in the
    bottom-right corner must get its CAM where it is, not about 10 px up and to the left."""
    image = torch.zeros(3, 375, 500)
    image[:, 336:368, 448:480] = 1.0  # two cells by two, aligned with the network's grid
    cam = one_cam(_PoolingCam(), image, [1], [1.0], flip=False)[0]
    cy, cx = _centre(cam * (cam > 0.5))
    assert abs(cy - 351.5) < 0.5 and abs(cx - 463.5) < 0.5
    assert cam[344:360, 456:472].min() > 0.8  # the square's own middle
    assert cam[:300].max() == 0 and cam[:, :400].max() == 0


def test_smaller_scales_are_antialiased_like_irns_pil_resize():
    """IRN shrinks images with PIL's bicubic resize, which filters out what the smaller image
    cannot hold; a plain bilinear resize aliases fine texture into false patterns."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(64, 192, size=(60, 84, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).resize((42, 30), Image.BICUBIC), np.float32)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float()
    got = rescale_image(image, 0.5).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 2.0  # PIL rounds to 8 bits
    aliased = F.interpolate(image[None], size=(30, 42), mode="bilinear")[0].permute(1, 2, 0)
    assert np.abs(aliased.numpy() - expected).max() > 20


def test_normalisation_puts_each_class_maximum_at_one(model):
    cam = one_cam(model, torch.randn(3, 40, 40), [1, 2, 3], [1.0], flip=False)
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
    cams = [rng.uniform(size=(2, 8, 8)) for _ in range(3)]
    gts = [rng.integers(0, 3, size=(8, 8)) for _ in range(3)]
    gts[0][0] = 255  # ignored pixels
    thresholds = [0.2, 0.45, 0.6]
    sweep = ThresholdSweep(3, thresholds)
    for cam, gt in zip(cams, gts, strict=True):
        sweep.update(gt, cam, np.array([1, 2]))
    table = sweep.table()
    assert list(table["threshold"]) == thresholds
    for row, threshold in zip(table.itertuples(), thresholds, strict=True):
        confusion = sum(
            confusion_matrix(gt, cam_to_label(cam, np.array([1, 2]), threshold), 3)
            for cam, gt in zip(cams, gts, strict=True)
        )
        precision, recall = foreground_precision_recall(confusion)
        assert row.miou == pytest.approx(segmentation_scores(confusion)["miou"])
        assert (row.fg_precision, row.fg_recall) == pytest.approx((precision, recall))
    assert table["miou"].nunique() == 3  # the rows differ: each used its own threshold


def test_cam_file_roundtrip_in_float16(tmp_path):
    cam = np.random.default_rng(0).uniform(size=(2, 5, 6)).astype(np.float32)
    save_cam(tmp_path / "a.npz", [3, 7], cam)
    classes, loaded = load_cam(tmp_path / "a.npz")
    np.testing.assert_array_equal(classes, [3, 7])
    np.testing.assert_allclose(loaded, cam, atol=1e-3)


def test_a_batch_of_images_gets_the_cams_each_gets_alone(model):
    torch.manual_seed(1)
    images = torch.randn(3, 3, 40, 56)
    classes = [[2, 4], [1], [1, 2, 3]]
    together = multiscale_cams(model, images, classes, [1.0, 0.5], flip=True)
    for image, image_classes, cam in zip(images, classes, together, strict=True):
        alone = one_cam(model, image, image_classes, [1.0, 0.5], flip=True)
        assert cam.shape == (len(image_classes), 40, 56)
        torch.testing.assert_close(cam, alone, rtol=1e-5, atol=1e-5)


def test_size_batches_group_one_size_in_list_order_and_cut_runs():
    sizes = {"a": (5, 4), "b": (3, 4), "c": (5, 4), "d": (5, 4), "e": (3, 4), "f": (5, 4)}
    batches = size_batches(list(sizes), sizes.__getitem__, batch_size=3)
    assert batches == [["b", "e"], ["a", "c", "d"], ["f"]]
    assert size_batches(list(sizes), sizes.__getitem__, batch_size=1) == [
        ["b"],
        ["e"],
        ["a"],
        ["c"],
        ["d"],
        ["f"],
    ]


def test_an_image_without_foreground_labels_gets_no_map_and_an_all_background_label(
    model, tmp_path
):
    """A folder dataset may list background-only images: no CAM channel, no crash, and every
    later labelling of its empty CAM file is background."""
    from destseg.refine.crf import DenseCRF
    from destseg.refine.labellers import confident_labels, crf_pseudo_mask

    torch.manual_seed(2)
    images = torch.randn(2, 3, 40, 56)
    empty, labelled = multiscale_cams(model, images, [[], [2]], [1.0, 0.5], flip=True)
    assert empty.shape == (0, 40, 56)
    torch.testing.assert_close(labelled, one_cam(model, images[1], [2], [1.0, 0.5], True))
    save_cam(tmp_path / "bg.npz", [], empty.numpy())
    classes, cam = load_cam(tmp_path / "bg.npz")
    assert cam.shape == (0, 40, 56) and len(classes) == 0
    image = np.zeros((40, 56, 3), np.uint8)
    assert not cam_to_label(cam, classes, 0.3).any()
    assert not crf_pseudo_mask(image, cam, classes, 0.3, DenseCRF(iterations=2)).any()
    assert not confident_labels(image, cam, classes, 0.3, 0.05, DenseCRF(iterations=2)).any()


@pytest.mark.parametrize("classes", [[1, 3], [2], []])
def test_the_one_pass_sweep_counts_what_each_threshold_labels(classes):
    """Every confusion matrix of the sweep equals labelling at that threshold and counting,
    with CAM values exactly at a threshold (float32 against float32, as cam_to_label compares),
    unsorted thresholds, ignored pixels, ties between classes and an image with no class."""
    rng = np.random.default_rng(1)
    thresholds = [0.6, 0.05, 0.3, 0.55, 0.95]
    cam = rng.uniform(size=(len(classes), 12, 10)).astype(np.float32)
    if classes:
        cam[0, :3] = np.float32(0.55)  # exactly at a threshold
        cam[:, 3, :] = cam[0, 3, :]  # ties
    gt = rng.integers(0, 4, size=(12, 10))
    gt[5] = 255
    sweep = ThresholdSweep(4, thresholds)
    sweep.update(gt, cam, np.array(classes, dtype=np.int64))
    sweep.update(gt[::-1].copy(), cam[:, ::-1].copy(), np.array(classes, dtype=np.int64))
    for i, threshold in enumerate(thresholds):
        expected = sum(
            confusion_matrix(g, cam_to_label(c, np.array(classes), threshold), 4)
            for g, c in [(gt, cam), (gt[::-1], cam[:, ::-1])]
        )
        np.testing.assert_array_equal(sweep.confusions[i], expected)


def _generate(model, layout, ids, out):
    from destseg.cam.generate import generate_cams
    from destseg.evaluation.thresholds import candidates

    sweep = ThresholdSweep(len(layout.classes), candidates())
    generate_cams(
        model, layout, ids, sweeps=dict.fromkeys(ids[::2], sweep), scales=[1.0, 0.5],
        flip=True, device=torch.device("cpu"), out_dir=out,
    )  # fmt: skip
    return sweep


@pytest.fixture
def threads(monkeypatch):
    """make_cam with its reading and writing threads, as beside a GPU (on the CPU it runs
    them inline)."""
    asked = []
    monkeypatch.setattr("destseg.cam.generate.overlaps", lambda device: asked.append(device) or 1)
    yield
    assert asked, "make_cam did not ask whether to overlap"


@pytest.mark.usefixtures("threads")
def test_the_overlapped_loop_writes_and_scores_what_a_plain_loop_does(tiny_layout, tmp_path):
    """Decoding and writing run in threads beside the network: the files and the sweep are
    byte for byte those of a loop that does one thing after the other, and the sweep saw the
    scored images only, in order."""
    from destseg.dataset.layout import load_image
    from destseg.dataset.torch_dataset import image_to_tensor
    from destseg.evaluation.thresholds import candidates

    torch.manual_seed(0)
    model = Classifier("resnet18", len(tiny_layout.classes) - 1, False, 16).eval()
    ids = tiny_layout.ids("train")[:7]
    threaded = _generate(model, tiny_layout, ids, tmp_path / "threaded")
    plain = ThresholdSweep(len(tiny_layout.classes), candidates())
    (tmp_path / "plain").mkdir()
    for image_id in ids:
        image = image_to_tensor(load_image(tiny_layout.image_path(image_id)))
        classes = tiny_layout.labels[image_id]
        cam = one_cam(model, image, classes, [1.0, 0.5], True).numpy()
        save_cam(tmp_path / "plain" / f"{image_id}.npz", classes, cam)
        if image_id in ids[::2]:
            gt = tiny_layout.ground_truth(image_id, cam.shape[1:])
            plain.update(gt, cam, np.asarray(classes))
    for image_id in ids:
        name = f"{image_id}.npz"
        assert (tmp_path / "threaded" / name).read_bytes() == (
            tmp_path / "plain" / name
        ).read_bytes()
    np.testing.assert_array_equal(threaded.confusions, plain.confusions)
    assert threaded.confusions[0].sum() > 0


@pytest.mark.bad_input
@pytest.mark.usefixtures("threads")
def test_an_image_that_fails_to_decode_in_the_reading_thread_is_named(tiny_layout, tmp_path):
    import shutil

    from destseg.dataset.layout import ImageFileError, VOCLayout

    layout = VOCLayout(tmp_path / "dataset")
    shutil.copytree(tiny_layout.root, layout.root)
    ids = layout.ids("train")[:4]
    path = layout.image_path(ids[2])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated after its header: the size reads
    model = Classifier("resnet18", len(layout.classes) - 1, False, 16).eval()
    with pytest.raises(ImageFileError, match=f"{ids[2]}.jpg: not a readable image"):
        _generate(model, layout, ids, tmp_path / "cam")
