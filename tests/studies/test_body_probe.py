"""studies/body_probe.py: the linear probe of an encoder on the bodies alone."""

from dataclasses import replace

import numpy as np
import torch

from destseg.dataset.sources.synthetic import SyntheticSpec, generate
from destseg.dataset.torch_dataset import image_to_tensor
from studies import body_probe

SPEC = SyntheticSpec(
    num_classes=3, image_size=64, train_images=6, val_images=3, part_style="constellation"
)


def test_the_probe_separates_separable_classes_and_not_random_labels():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))
    y = rng.integers(0, 4, 400)
    x = (centres[y] + rng.normal(0, 1, (400, 16))).astype(np.float32)
    train, test = (x[:300], y[:300]), (x[300:], y[300:])
    assert body_probe.probe_accuracy(train, test, 4) > 0.95
    shuffled = (x[:300], rng.permutation(y[:300]))
    assert body_probe.probe_accuracy(shuffled, test, 4) < 0.5  # chance: 0.25


class _Identity:
    """An 'encoder' whose features are the image itself (stride 1): the vector of a body is
    then its mean colour, which numpy gives directly."""

    @staticmethod
    def encoder(x):
        return x


def test_body_vectors_average_the_painted_out_body_pixels_of_each_class():
    x, y = body_probe.body_features(_Identity(), SPEC, 3, "val")
    expected_x, expected_y = [], []
    for split, _, image, mask, parts in generate(replace(SPEC, part_saliency=0.0), 3):
        if split != "val":
            continue
        tensor = image_to_tensor(image).numpy()
        for cls in np.unique(mask[(mask > 0) & (mask < 255)]):
            body = (mask == cls) & ~parts
            expected_x.append(tensor[:, body].mean(1))
            expected_y.append(cls - 1)
    np.testing.assert_allclose(x, np.stack(expected_x), rtol=1e-4, atol=1e-5)
    assert list(y) == expected_y and len(y) >= 3


def test_painting_out_keeps_every_random_draw():
    for a, b in zip(generate(SPEC, 1), generate(body_probe.painted_out(SPEC), 1), strict=True):
        assert (a[3] == b[3]).all() and (a[4] == b[4]).all()
        assert (a[2][~a[4]] == b[2][~a[4]]).all()  # only the part pixels change
        assert (a[2][a[4]] != b[2][a[4]]).any() or not a[4].any()


def test_the_probe_runs_on_a_classifier_encoder():
    from destseg.models.classifier import Classifier

    torch.manual_seed(0)
    model = Classifier("resnet10", 3, False, 16).eval()
    accuracy = body_probe.body_probe(model, SPEC, 0)
    assert 0.0 <= accuracy <= 1.0
