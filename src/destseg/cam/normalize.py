"""The one epsilon and the one per-class normalisation of CAMs.

``EPS`` (1e-5, IRN's value) keeps every division by a maximum and every log of a probability or
an affinity finite: in the CAMs, in the probabilities the CRF reads, in the walk's output and in
AffinityNet's loss. A CAM's maps are each divided by their own maximum, so that one background
threshold means the same for every class of every image; the random walk's ``per_class`` mode
does the same to its output.
"""

from __future__ import annotations

import torch

EPS = 1e-5


def normalize_per_class(cam: torch.Tensor) -> torch.Tensor:
    """Divide each map of a (k, H, W) stack by its maximum (a map of zeros stays zero)."""
    return cam / (cam.amax(dim=(-2, -1), keepdim=True) + EPS)
