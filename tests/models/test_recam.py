"""ReCAM: class-pooled features, its loss against hand computations, the reweighted CAM, the
second phase's parameter groups and the start from a trained classifier."""

import math

import pytest
import torch
import torch.nn.functional as F

from destseg.models.classifier import Classifier
from destseg.models.classifier_loss import LossTerms, classifier_loss
from destseg.models.model_file import build_model, load_weights, save_model
from destseg.models.recam import class_features, recam_logits, recam_loss


def test_each_class_pools_the_features_under_its_max_normalised_cam():
    stacked = torch.tensor([[[[1.0, 3.0]], [[2.0, 0.0]]]])  # (1, C=2, 1, 2)
    weight = torch.tensor([[1.0, 0.0], [-1.0, 1.0]]).reshape(2, 2, 1, 1)
    # class 0: CAM (1, 3) -> /3 -> (1/3, 1); class 1: CAM (1, -3) -> ReLU (1, 0) -> /1 -> (1, 0)
    pooled = class_features(stacked, weight)
    eps = 1e-5
    c0 = torch.tensor([1 / (3 + eps), 3 / (3 + eps)])
    c1 = torch.tensor([1 / (1 + eps), 0.0])
    expected = torch.stack(
        [
            torch.stack([(c0 * stacked[0, 0, 0]).mean(), (c0 * stacked[0, 1, 0]).mean()]),
            torch.stack([(c1 * stacked[0, 0, 0]).mean(), (c1 * stacked[0, 1, 0]).mean()]),
        ]
    )
    torch.testing.assert_close(pooled[0], expected)


def test_the_scores_are_the_references_per_image_loop():
    torch.manual_seed(0)
    stacked, weight, head = torch.randn(3, 5, 4, 4), torch.randn(4, 5, 1, 1), torch.randn(4, 5)
    logits = recam_logits(stacked, weight, head.reshape(4, 5, 1, 1))
    cams = F.relu(F.conv2d(stacked, weight))
    cams = cams / (F.adaptive_max_pool2d(cams, 1) + 1e-5)
    # Net_CAM_Feature: the (N, K, C, h, w) product, averaged over the positions
    features = (cams.unsqueeze(2) * stacked.unsqueeze(1)).flatten(3).mean(-1)
    torch.testing.assert_close(logits, features @ head.T, rtol=1e-5, atol=1e-5)


def test_the_loss_is_each_present_class_against_itself_averaged_per_image_over_the_batch():
    logits = torch.tensor(
        [
            [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]],
            [[0.0, 0.0, 0.0], [1.0, 0.0, 3.0], [0.0, 0.0, 1.0]],
            [[9.0, 9.0, 9.0], [9.0, 9.0, 9.0], [9.0, 9.0, 9.0]],
        ]
    )
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])

    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    first = (ce([2, 0, 0], 0) + ce([0, 1, 0], 1)) / 2
    second = (ce([1, 0, 3], 1) + ce([0, 0, 1], 2)) / 2
    # the third image has no class: it adds nothing but counts in the batch (the reference's
    # loss / batch_size)
    assert recam_loss(logits, target).item() == pytest.approx((first + second) / 3, rel=1e-6)


def _phase_one(ldm=None, mdc=None):
    torch.manual_seed(0)
    return Classifier("resnet18", 3, pretrained=False, output_stride=16, ldm=ldm, mdc=mdc)


MDC = {"grid": 2, "position": 4, "shared": True, "activation": True}
LDM = {"grid": 4, "k": 1, "probability": 1.0}


def test_the_recam_cam_uses_the_heads_weights_times_the_classifiers():
    model = _phase_one(mdc=MDC)
    model.recam_head = torch.nn.Conv2d(model.classifier.in_channels, 3, 1, bias=False)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stacked = torch.cat(model.branches(x, destruct=False), dim=1)
        product = model.classifier.weight * model.recam_head.weight
        expected = torch.einsum("kc,nchw->nkhw", product[:, :, 0, 0], stacked)
        torch.testing.assert_close(model.cam(x), expected, rtol=1e-4, atol=1e-4)


def test_the_second_phase_starts_from_the_classifier_and_trains_the_new_head_faster(tmp_path):
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16, "mdc": MDC}
    trained = build_model(Classifier, config)
    save_model(tmp_path / "cls.pt", trained, config)
    torch.manual_seed(1)
    model = build_model(Classifier, {**config, "recam": True})
    assert load_weights(model, tmp_path / "cls.pt", Classifier) == config
    for name, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    base, new = model.param_groups(0.1, 10, 1e-4)
    assert [id(p) for p in new["params"]] == [id(model.recam_head.weight)]
    assert new["lr"] == pytest.approx(1.0) and base["lr"] == 0.1
    expected = [p for n, p in model.named_parameters() if not n.startswith("recam_head")]
    assert [id(p) for p in base["params"]] == [id(p) for p in expected]
    assert any(p is model.classifier.weight for p in base["params"])  # no longer new


@pytest.mark.bad_input
def test_a_classifier_of_another_architecture_is_refused_by_name(tmp_path):
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    save_model(tmp_path / "cls.pt", build_model(Classifier, config), config)
    other = build_model(Classifier, {**config, "mdc": MDC, "recam": True})
    with pytest.raises(ValueError, match=r"cls.pt: its weights do not fit the network to train"):
        load_weights(other, tmp_path / "cls.pt", Classifier)


def test_the_loss_adds_recams_term_with_its_weight_and_reaches_the_encoder():
    model = _phase_one(LDM, MDC)
    model.recam_head = torch.nn.Conv2d(model.classifier.in_channels, 3, 1, bias=False)
    model.train()
    batch = {
        "image": torch.randn(2, 3, 64, 64),
        "seed": torch.tensor([1, 2]),
        "target": torch.tensor([[1.0, 0, 1], [0, 1, 0]]),
    }
    names = ("ldm", "plain", "mdc")
    loss, logged = classifier_loss(model, batch, 0.0, LossTerms(names, recam=0.5))
    out = model(batch["image"], seeds=batch["seed"], recam=True)
    stacked = F.multilabel_soft_margin_loss(out["logits"], batch["target"])
    recam = recam_loss(out["recam"], batch["target"])
    torch.testing.assert_close(logged["loss_recam"], recam.detach())
    torch.testing.assert_close(loss, stacked + 0.5 * recam, rtol=1e-5, atol=1e-6)
    model.zero_grad()
    recam.backward()
    assert model.recam_head.weight.grad.abs().sum() > 0
    assert model.encoder.stem[0].weight.grad.abs().sum() > 0


def test_asking_a_classifier_without_the_head_for_its_scores_is_an_error():
    with pytest.raises(ValueError, match="no ReCAM head"):
        _phase_one()(torch.randn(1, 3, 64, 64), recam=True)
