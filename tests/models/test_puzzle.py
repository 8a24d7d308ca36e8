"""Puzzle-CAM: tiles cut and stitched back, its losses against hand computations, and the
classifier's tile pass."""

import math

import pytest
import torch
import torch.nn.functional as F

from destseg.models.classifier import Classifier
from destseg.models.classifier_loss import LossTerms, classifier_loss
from destseg.models.puzzle import (
    alpha_at,
    cut_tiles,
    puzzle_loss,
    reconstruction_loss,
    stitch_tiles,
)


def test_tiles_are_cut_row_by_row_and_stitched_back_where_they_were():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    tiles = cut_tiles(images, 2)
    assert tiles.shape == (8, 3, 2, 3)
    # block r * 2 + c of the batch holds tile (r, c) of every image, as the reference orders
    for r in range(2):
        for c in range(2):
            for i in range(2):
                expected = images[i, :, 2 * r : 2 * r + 2, 3 * c : 3 * c + 3]
                assert torch.equal(tiles[(r * 2 + c) * 2 + i], expected)
    assert torch.equal(stitch_tiles(tiles, 2), images)
    three = torch.randn(1, 2, 6, 9)
    assert torch.equal(stitch_tiles(cut_tiles(three, 3), 3), three)


def test_a_side_the_tiles_do_not_divide_is_refused():
    with pytest.raises(ValueError, match="cannot be cut into 2\\^2 equal tiles"):
        cut_tiles(torch.zeros(1, 3, 5, 4), 2)


def test_the_reconstruction_loss_counts_absent_classes_as_zeros_in_the_mean():
    cam = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2 classes, 1, 2)
    stitched = torch.tensor([[[[0.0, 2.0]], [[3.0, 0.0]]]])
    # class 0 present: |1 - 0| + |2 - 2| = 1; class 1 absent: its |4 - 0| is masked out; 4 values
    loss = reconstruction_loss(cam, stitched, torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(1 / 4)
    both = reconstruction_loss(cam, stitched, torch.tensor([[1.0, 1.0]]))
    assert both.item() == pytest.approx(5 / 4)


def test_alpha_grows_linearly_over_the_ramp_then_stays():
    assert alpha_at(0.0, 4.0, 0.5) == 0.0
    assert alpha_at(0.25, 4.0, 0.5) == pytest.approx(2.0)
    assert alpha_at(0.5, 4.0, 0.5) == 4.0 and alpha_at(0.9, 4.0, 0.5) == 4.0
    assert alpha_at(0.0, 4.0, 0.0) == 4.0  # no ramp: the full weight from the first step


def test_the_puzzle_terms_are_the_stitched_maps_loss_plus_alpha_times_the_reconstruction():
    cam = torch.tensor([[[[1.0, 3.0]], [[-1.0, 1.0]]]])
    stitched = torch.tensor([[[[2.0, 2.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[0.0, 1.0]])
    loss, terms = puzzle_loss(cam, stitched, target, alpha=2.0)
    # the stitched maps' means are (2, 0): multi-label soft margin by hand
    tiled = -(math.log(1 - 1 / (1 + math.exp(-2.0))) + math.log(1 / (1 + math.exp(0.0)))) / 2
    reconstruction = (1 + 1) / 4  # class 1 only: |-1 - 0| + |1 - 0|, over 4 values
    assert terms["loss_tiled"].item() == pytest.approx(tiled, rel=1e-6)
    assert terms["loss_reconstruction"].item() == pytest.approx(reconstruction)
    assert loss.item() == pytest.approx(tiled + 2.0 * reconstruction, rel=1e-6)


def _model(ldm=None, mdc=None):
    torch.manual_seed(0)
    return Classifier("resnet18", 3, pretrained=False, output_stride=16, ldm=ldm, mdc=mdc)


LDM = {"grid": 4, "k": 1, "probability": 1.0}
MDC = {"grid": 2, "position": 4, "shared": True, "activation": True}


@pytest.mark.parametrize(("ldm", "mdc"), [(None, None), (LDM, MDC)], ids=["plain", "ldm-mdc"])
def test_the_tiled_cam_is_each_tiles_own_cam_stitched(ldm, mdc):
    model = _model(ldm, mdc).eval()  # running statistics: a tile's map is its own alone
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        out = model(x, tiles=2)
        torch.testing.assert_close(out["cam"], model.cam(x))
        assert out["tiled_cam"].shape == out["cam"].shape == (2, 3, 8, 6)
        for r in range(2):
            for c in range(2):
                tile = x[:, :, 64 * r : 64 * r + 64, 48 * c : 48 * c + 48]
                got = out["tiled_cam"][:, :, 4 * r : 4 * r + 4, 3 * c : 3 * c + 3]
                torch.testing.assert_close(got, model.cam(tile), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out["logits"], model(x))


def test_in_training_the_whole_cam_is_the_intact_images_while_the_logits_see_the_shuffle():
    model = _model(LDM, MDC).train()
    x, seeds = torch.randn(2, 3, 64, 64), torch.tensor([5, 6])
    with torch.no_grad():
        out = model(x, seeds=seeds, tiles=2)
        features = model.branches(x, destruct=True, seeds=seeds)
        intact = torch.cat([features[1], features[1], features[2]], dim=1)
        torch.testing.assert_close(out["cam"], model.classifier(intact), rtol=1e-4, atol=1e-4)
        shuffled = model.classifier(torch.cat(features, dim=1)).mean((-2, -1))
        torch.testing.assert_close(out["logits"], shuffled, rtol=1e-4, atol=1e-4)


def test_the_puzzle_loss_trains_the_encoder_through_the_tiles_and_ramps_its_weight():
    model = _model().train()
    batch = {
        "image": torch.randn(2, 3, 64, 64),
        "seed": torch.tensor([1, 2]),
        "target": torch.tensor([[1.0, 0, 1], [0, 1, 0]]),
    }
    terms = LossTerms(tiles=2, alpha=4.0, alpha_ramp=0.5)
    start, logged = classifier_loss(model, batch, 0.0, terms)
    assert set(logged) == {"loss_tiled", "loss_reconstruction"}
    plain = F.multilabel_soft_margin_loss(model(batch["image"]), batch["target"])
    # at progress 0 alpha is 0: the whole image's loss and the stitched maps' loss
    torch.testing.assert_close(start, plain + logged["loss_tiled"], rtol=1e-5, atol=1e-6)
    late, logged = classifier_loss(model, batch, 0.75, terms)
    expected = plain + logged["loss_tiled"] + 4.0 * logged["loss_reconstruction"]
    torch.testing.assert_close(late, expected, rtol=1e-5, atol=1e-6)
    model.zero_grad()
    _, logged = classifier_loss(model, batch, 0.75, terms)
    out = model(batch["image"], tiles=2)  # the reconstruction alone reaches the stem
    reconstruction_loss(out["cam"], out["tiled_cam"], batch["target"]).backward()
    assert model.encoder.stem[0].weight.grad.abs().sum() > 0
