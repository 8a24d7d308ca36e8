"""Fully connected CRF (Kraehenbuehl and Koltun 2011) over class probabilities, via pydensecrf.

Built once from its parameters and then called per image, so a pool of worker processes can map
it over a dataset (as deeplab-pytorch does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax


@dataclass(frozen=True)
class DenseCRF:
    """Mean-field inference with a Gaussian (smoothness) and a bilateral (appearance) kernel."""

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Posterior (n, H, W) float32 for an RGB uint8 image (H, W, 3) and probabilities
        (n, H, W) that sum to one over the first axis."""
        n, height, width = probs.shape
        if image.shape[:2] != (height, width):
            raise ValueError(f"image {image.shape[:2]} and probabilities {probs.shape[1:]} differ")
        crf = dcrf.DenseCRF2D(width, height, n)
        crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=self.bilateral_sxy,
            srgb=self.bilateral_srgb,
            rgbim=np.ascontiguousarray(image, dtype=np.uint8),
            compat=self.bilateral_compat,
        )
        posterior = crf.inference(self.iterations)
        return np.asarray(posterior, dtype=np.float32).reshape(n, height, width)
