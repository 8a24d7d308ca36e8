"""Inference under mixed precision (amp: bf16), exercised on the CPU: the networks run in bf16,
everything summed or iterated after them stays in float32."""

import numpy as np
import pytest
import torch

from destseg.affinity.propagation import propagate_cams
from destseg.affinity.walk import propagate_cam
from destseg.cam.generate import multiscale_cams
from destseg.cam.store import load_cam, save_cam
from destseg.dataset.layout import load_image
from destseg.dataset.torch_dataset import image_to_tensor
from destseg.evaluation.inference import segment
from destseg.models.affinity_net import AffinityNet
from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model
from destseg.models.segmenter import Segmenter
from destseg.runtime.device import resolve_precision


def one_cam(model, image, classes, scales, flip):
    """The CAMs (k, H, W) of one image (3, H, W) for its ``classes``."""
    return multiscale_cams(model, image[None], [classes], scales, flip)[0]


def _bf16_autocast_on_cpu() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.nn.Conv2d(3, 2, 3)(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    except RuntimeError:
        return False


pytestmark = pytest.mark.skipif(
    not _bf16_autocast_on_cpu(), reason="this torch has no bf16 autocast on the CPU"
)
BF16 = resolve_precision("bf16", torch.device("cpu"))


def test_cams_under_bf16_are_float32_and_near_the_float32_cams():
    torch.manual_seed(0)
    model = Classifier("resnet18", num_classes=4, pretrained=False, output_stride=16).eval()
    image = torch.randn(3, 64, 80)
    reference = one_cam(model, image, [1, 3], [1.0, 0.5], flip=True)
    with BF16.autocast():
        cams = one_cam(model, image, [1, 3], [1.0, 0.5], flip=True)
    assert cams.dtype == torch.float32
    torch.testing.assert_close(cams.amax((1, 2)), torch.ones(2))
    torch.testing.assert_close(cams, reference, atol=0.08, rtol=0)


def test_segmenter_probabilities_under_bf16_are_float32_and_sum_to_one():
    torch.manual_seed(0)
    config = {"backbone": "resnet18", "num_classes": 4, "output_stride": 16}
    model = build_model(Segmenter, config).eval()
    image = torch.randn(3, 48, 64)
    with BF16.autocast():
        probs = segment(model, image, [1.0, 0.75], flip=True)
    assert probs.dtype == torch.float32 and probs.shape == (4, 48, 64)
    torch.testing.assert_close(probs.sum(0), torch.ones(48, 64))


def test_the_random_walk_stays_in_float32_under_the_callers_autocast(tiny_layout, tmp_path):
    torch.manual_seed(0)
    config = {"backbone": "resnet18", "output_stride": 16, "feature_stride": 4, "radius": 3}
    model = AffinityNet(**config, pretrained=False).eval()
    image_id = tiny_layout.ids("train")[0]
    classes = tiny_layout.labels[image_id]
    cam = np.random.default_rng(0).random((len(classes), 64, 64)).astype(np.float32)
    save_cam(tmp_path / "cam" / f"{image_id}.npz", classes, cam)
    with BF16.autocast():
        propagate_cams(
            model,
            tiny_layout,
            [image_id],
            cam_dir=tmp_path / "cam",
            out_dir=tmp_path / "out",
            beta=8.0,
            exp_times=3,
            normalize="per_class",
            device=torch.device("cpu"),
        )
        image = image_to_tensor(load_image(tiny_layout.image_path(image_id)))
        with torch.no_grad():  # the network in bf16, as propagate_cams runs it
            affinity = model(image[None])[0].float()
    _, stored = load_cam(tmp_path / "cam" / f"{image_id}.npz")
    expected = propagate_cam(torch.from_numpy(stored), affinity, 3, 8.0, 3, 4, "per_class")
    _, walked = load_cam(tmp_path / "out" / f"{image_id}.npz")
    np.testing.assert_array_equal(walked, save_and_load(tmp_path, classes, expected.numpy()))


def save_and_load(folder, classes, cam):
    """``cam`` through the CAM file format (float16 storage), as propagate_cams stores it."""
    save_cam(folder / "expected.npz", classes, cam)
    return load_cam(folder / "expected.npz")[1]


def test_the_deterministic_block_restores_the_callers_setting_and_keeps_cpu_results():
    import torch

    from destseg.affinity.walk import propagate_cam
    from destseg.runtime.device import deterministic

    torch.manual_seed(0)
    cam, affinity = torch.rand(2, 32, 32), torch.rand(12, 8, 8)  # radius 3: 12 pairs
    plain = propagate_cam(cam, affinity, 3, 8, 3, 4, "per_class")
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled()
        inside = propagate_cam(cam, affinity, 3, 8, 3, 4, "per_class")
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(plain, inside)  # the CPU kernels were deterministic already
