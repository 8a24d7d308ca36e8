"""Fully connected CRF (Kraehenbuehl and Koltun 2011) over class probabilities, via pydensecrf.

Built once from its parameters and then called per image, so a pool of worker processes can map
it over a dataset (as deeplab-pytorch does). Two unaries, as in the reference code: the
probabilities themselves (``probability``: PSA's and the pseudo-masks' CRF), or only their argmax
trusted with probability ``gt_prob`` (``label``: IRN's ``crf_inference_label``, which mines the
confident regions AffinityNet learns from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels, unary_from_softmax

UNARIES = ("probability", "label")


@dataclass(frozen=True)
class DenseCRF:
    """Mean-field inference with a Gaussian (smoothness) and a bilateral (appearance) kernel."""

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0
    unary: str = "probability"
    gt_prob: float = 0.7

    def __post_init__(self) -> None:
        if self.unary not in UNARIES:
            raise ValueError(f"unary must be one of {', '.join(UNARIES)}, got {self.unary!r}")
        if not 0 < self.gt_prob < 1:
            raise ValueError(f"gt_prob must lie in (0, 1), got {self.gt_prob}")

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Posterior (n, H, W) float32 for an RGB uint8 image (H, W, 3) and probabilities
        (n, H, W) that sum to one over the first axis."""
        n, height, width = probs.shape
        if image.shape[:2] != (height, width):
            raise ValueError(f"image {image.shape[:2]} and probabilities {probs.shape[1:]} differ")
        if n == 1:  # one label: nothing to infer (and a label unary would divide by n - 1)
            return np.ones((1, height, width), dtype=np.float32)
        if self.unary == "label":
            energy = unary_from_labels(probs.argmax(0), n, self.gt_prob, zero_unsure=False)
        else:
            energy = unary_from_softmax(probs.astype(np.float32))
        crf = dcrf.DenseCRF2D(width, height, n)
        crf.setUnaryEnergy(np.ascontiguousarray(energy, dtype=np.float32))
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=self.bilateral_sxy,
            srgb=self.bilateral_srgb,
            rgbim=np.ascontiguousarray(image, dtype=np.uint8),
            compat=self.bilateral_compat,
        )
        posterior = crf.inference(self.iterations)
        return np.asarray(posterior, dtype=np.float32).reshape(n, height, width)
