"""ReCAM (Chen et al., CVPR 2022): the classifier's features pooled under each present class's
CAM, classified again by a new bias-free head with a softmax cross-entropy.

A positive control for destruction learning. The multi-label loss lets one image's class maps
overlap and stop at the most discriminative part; asking the feature pooled under class k's map
to be recognised as k *among all classes* (a softmax, where the multi-label loss has
independent sigmoids) penalises maps that also cover another class's evidence. Learned from the
reference code (zhaozhengChen/ReCAM: ``net/resnet50_cam.py`` ``Net_CAM_Feature`` and
``Class_Predictor``, ``step/train_recam.py``, ``step/make_recam.py``), not copied:

* CAM_k = ReLU(w_k . F), divided by its maximum over the map (+ 1e-5); the class's feature is
  the mean over the positions of CAM_k x F; the reference materialises a (N, K, C, h, w)
  product for it, the same sum is one contraction here;
* the head is a 1x1 bias-free convolution W' (K x C); for every image, the features of its
  present classes are classified by it against their own class (cross-entropy averaged over
  the image's classes), the sum over images divided by the batch size;
* at inference the CAM is the network's with W' x W (element-wise) as the classifier's weights:
  ReLU((W'_k * W_k) . F), then scales, flips and max-normalisation as for any CAM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_features(stacked: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The feature pooled under each class's max-normalised CAM: (N, C, h, w) features and the
    classifier's (K, C, 1, 1) weights -> (N, K, C), mean over the positions of CAM_k x F."""
    cams = F.relu(F.conv2d(stacked, weight))
    cams = cams / (cams.amax(dim=(-2, -1), keepdim=True) + 1e-5)
    return torch.einsum("nkhw,nchw->nkc", cams, stacked) / cams[0, 0].numel()


def recam_logits(stacked: torch.Tensor, weight: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """(N, K, K): row k of image n is ReCAM's head (``head``: (K, C, 1, 1)) on the feature
    pooled under class k's CAM, its scores for every class."""
    return torch.einsum("nkc,jc->nkj", class_features(stacked, weight), head.flatten(1))


def recam_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ReCAM's softmax cross-entropy: each present class's pooled feature (a row of ``logits``,
    (N, K, K)) classified against its own class, averaged over the image's present classes
    (``target``: (N, K) in {0, 1}), summed over the images and divided by their number (an
    image without a class adds nothing but counts, as in the reference)."""
    own = -F.log_softmax(logits.float(), dim=-1).diagonal(dim1=1, dim2=2)  # (N, K)
    present = target.float()
    per_image = (own * present).sum(1) / present.sum(1).clamp(min=1)
    return per_image.sum() / len(target)


def recam_weight(classifier: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """The 1x1 weights whose map is ReCAM's CAM: the head's times the classifier's."""
    return classifier * head
