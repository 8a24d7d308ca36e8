import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels

from destseg.dataset.layout import IGNORE_INDEX
from destseg.refine.crf import DenseCRF
from destseg.refine.labellers import cam_probabilities, crf_pseudo_mask


def _scene():
    """A red disk on a blue background, and a CAM that is blurred, shifted and noisy."""
    yy, xx = np.mgrid[0:64, 0:64]
    truth = ((yy - 32) ** 2 + (xx - 30) ** 2 <= 15**2).astype(np.uint8)
    image = np.where(truth[..., None] == 1, [200, 40, 40], [40, 60, 190]).astype(np.uint8)
    rng = np.random.default_rng(0)
    blob = np.exp(-(((yy - 35) ** 2 + (xx - 34) ** 2) / (2 * 12.0**2)))
    cam = np.clip(blob + rng.normal(0, 0.25, size=blob.shape), 0, 1)[None]
    return image, truth, cam


def test_crf_makes_a_noisy_mask_agree_better_with_the_truth():
    image, truth, cam = _scene()
    noisy = (cam[0] > 0.4).astype(np.uint8)
    refined = crf_pseudo_mask(image, cam, np.array([1]), 0.4, DenseCRF())
    accuracy_before = (noisy == truth).mean()
    accuracy_after = (refined == truth).mean()
    assert accuracy_after > accuracy_before + 0.05
    assert accuracy_after > 0.97


def test_probabilities_argmax_is_the_thresholded_cam():
    cam = np.array([[[0.1, 0.5]], [[0.3, 0.2]]])
    probs = cam_probabilities(cam, 0.25)
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probs.argmax(0), [[2, 1]])


def test_low_confidence_pixels_are_ignored():
    image, _, cam = _scene()
    refined = crf_pseudo_mask(image, cam, np.array([1]), 0.4, DenseCRF(), min_confidence=0.999)
    assert (refined == IGNORE_INDEX).any()
    kept = crf_pseudo_mask(image, cam, np.array([1]), 0.4, DenseCRF(), min_confidence=0.0)
    assert not (kept == IGNORE_INDEX).any()


def _irn_crf_inference_label(image, labels, n_labels, gt_prob=0.7, t=10):
    """IRN's misc/imutils.crf_inference_label, written out with pydensecrf."""
    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(image), compat=10)
    return np.argmax(np.array(crf.inference(t)).reshape((n_labels, height, width)), axis=0)


def test_the_label_unary_is_irns_crf_inference_label():
    image, truth, cam = _scene()
    irn_crf = DenseCRF(unary="label", gt_prob=0.7)  # kernels 3/3 and 50/5/10: IRN's
    got = crf_pseudo_mask(image, cam, np.array([1]), 0.4, irn_crf)
    initial = np.argmax(np.pad(cam, ((1, 0), (0, 0), (0, 0)), constant_values=0.4), axis=0)
    np.testing.assert_array_equal(got, _irn_crf_inference_label(image, initial, 2))
    assert (got == truth).mean() > ((cam[0] > 0.4) == truth).mean() + 0.05
    soft = crf_pseudo_mask(image, cam, np.array([1]), 0.4, DenseCRF())
    assert not np.array_equal(got, soft)  # the unary matters


def test_a_single_label_needs_no_inference():
    image, _, _ = _scene()
    for unary in ("probability", "label"):
        posterior = DenseCRF(unary=unary)(image, np.ones((1, 64, 64), np.float32))
        assert posterior.shape == (1, 64, 64) and np.all(posterior == 1)
