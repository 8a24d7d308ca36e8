"""Every real configuration's three trainings at the crop, per-process batch and settings it
ships, one step each (loss and backward) on torch's meta device: shapes only, no arithmetic.

The end-to-end runs of these configurations (tests/pipeline/test_e2e_voc.py, test_e2e_coco.py)
crop 128 to fit the suite's time (a ResNet-50 step at 512 costs about 20 s per image on one CPU
core); this is where the shipped crops meet the networks and losses that will train on them on
a GPU: LDM's grid over the crop, MDC's patches and Puzzle-CAM's tiles of its feature map,
ReCAM's head, AffinityNet's pairs at its radius and DeepLabV3's ASPP.
"""

from contextlib import nullcontext
from functools import partial

import pytest
import torch
from test_configs import CONFIGS
from torchvision import tv_tensors

from destseg.dataset.sources.coco2014 import NUM_CATEGORIES
from destseg.dataset.sources.voc2012 import CLASSES as VOC_CLASSES
from destseg.dataset.torch_dataset import train_transform
from destseg.models.affinity_net import AffinityNet
from destseg.models.classifier import Classifier, branch_names
from destseg.models.classifier_loss import LossTerms, classifier_loss
from destseg.models.segmenter import Segmenter
from stages.params.aff import AffParams
from stages.params.cls import ClsParams
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.recam import RecamParams
from stages.params.seg import SegParams
from stages.train_aff import pair_loss
from stages.train_cls import loss_terms
from stages.train_seg import segmentation_loss


def _batch(path, p, classes: int) -> dict:
    """One per-process batch of configuration ``path`` as the stage's transform crops it at
    ``p.crop_size`` (the crop of one toy image, repeated), on the meta device; per-image seeds
    stay on the CPU, where the LDM reads them."""
    size = p.batch_size // (read_dist(path).nproc * p.accumulate)
    image = tv_tensors.Image(torch.zeros(3, 90, 120, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(90, 120, dtype=torch.int64))
    crop, crop_mask = train_transform(p.crop_size, p.scale_range, p.color_jitter)(image, mask)
    assert crop.shape[-2:] == (p.crop_size,) * 2
    return {
        "image": crop.expand(size, -1, -1, -1).to("meta"),
        "mask": crop_mask.expand(size, -1, -1).to("meta"),
        "target": torch.ones(size, classes, device="meta"),
        "seed": torch.arange(size),
    }


def _step(network, config: dict, loss_fn, batch: dict) -> None:
    with torch.device("meta"):
        model = network(**config, pretrained=False)
    model.train()
    loss = loss_fn(model, batch, 0.5)
    loss = loss[0] if isinstance(loss, tuple) else loss
    assert loss.shape == () and loss.device.type == "meta"
    loss.backward()
    assert all(w.grad is not None for w in model.parameters() if w.requires_grad)


@pytest.fixture(params=sorted(CONFIGS))
def config(request):
    path = CONFIGS[request.param]
    # with background
    return path, NUM_CATEGORIES + 1 if request.param.startswith("coco") else len(VOC_CLASSES)


def test_the_classifier_trains_at_the_shipped_crop(config):
    path, classes = config
    p = read_params(path, "cls", ClsParams)
    network = {"backbone": p.backbone, "num_classes": classes - 1, "output_stride": p.output_stride}
    batch = _batch(path, p, classes - 1)
    _step(Classifier, network | p.variant(), partial(classifier_loss, terms=loss_terms(p)), batch)
    recam = read_params(path, "recam", RecamParams)
    if recam.enabled:
        terms = LossTerms(branches=tuple(branch_names(**p.variant())), recam=recam.loss_weight)
        _step(
            Classifier,
            network | p.variant() | {"recam": True},
            partial(classifier_loss, terms=terms),
            batch,
        )


def test_affinitynet_trains_at_the_shipped_crop(config, monkeypatch):
    path, _ = config
    # its float32 block leaves autocast, which has no meta device: shapes need neither
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: nullcontext())
    p = read_params(path, "aff", AffParams)
    network = {
        "backbone": p.backbone,
        "output_stride": p.output_stride,
        "feature_stride": p.feature_stride,
        "radius": p.radius,
    }
    batch = _batch(path, p, 1)
    _step(AffinityNet, network, partial(pair_loss, radius=p.radius), batch)


def test_the_segmenter_trains_at_the_shipped_crop(config):
    path, classes = config
    p = read_params(path, "seg", SegParams)
    network = {"backbone": p.backbone, "num_classes": classes, "output_stride": p.output_stride}
    _step(Segmenter, network, segmentation_loss, _batch(path, p, classes))


def test_a_crop_the_network_cannot_take_fails_here():
    """The check can fail: a crop smaller than LDM's grid of cells is refused by the network."""
    p = read_params(CONFIGS["voc2012"], "cls", ClsParams)
    p = p.model_copy(update={"crop_size": 4})
    network = {"backbone": p.backbone, "num_classes": 20, "output_stride": p.output_stride}
    batch = _batch(CONFIGS["voc2012"], p, 20)
    loss_fn = partial(classifier_loss, terms=loss_terms(p))
    with pytest.raises(ValueError, match="cannot be cut into 7\\^2 cells"):
        _step(Classifier, network | p.variant(), loss_fn, batch)

