import pytest
import torch

from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, load_model, save_model

LDM = {"grid": 4, "k": 1, "probability": 1.0}
MDC = {"grid": 2, "position": 4, "shared": True, "activation": True}
VARIANTS = {
    "baseline": (None, None),
    "ldm": (LDM, None),
    "mdc": (None, MDC),
    "both": (LDM, MDC),
    "mdc3": (None, {**MDC, "position": 3, "shared": False}),
}


def _model(ldm, mdc, backbone="resnet18"):
    torch.manual_seed(0)
    return Classifier(backbone, 3, pretrained=False, output_stride=16, ldm=ldm, mdc=mdc)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cam_equals_a_direct_computation_from_the_branches(variant):
    ldm, mdc = VARIANTS[variant]
    model = _model(ldm, mdc).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stages = model.encoder.stage_outputs(x)
        plain = stages[-1]
        maps = [plain] * (2 if ldm else 1)  # at inference the LDM branch sees the image itself
        if mdc:
            mid = model.mdc(stages[mdc["position"] - 1])
            for stage in model.encoder.stages[mdc["position"] :]:
                mid = stage(mid)
            maps.append(mid)
        weights = model.classifier.weight[:, :, 0, 0].split(plain.shape[1], dim=1)
        expected = sum(
            torch.einsum("kc,nchw->nkhw", w, f) for w, f in zip(weights, maps, strict=True)
        )
        torch.testing.assert_close(model.cam(x), expected, rtol=1e-4, atol=1e-4)
        # and the logits are the spatial mean of that CAM
        torch.testing.assert_close(model(x), expected.mean(dim=(-2, -1)), rtol=1e-4, atol=1e-4)
    assert model.classifier.in_channels == len(maps) * plain.shape[1]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_branchs_own_logits_add_up_to_the_logits(variant):
    ldm, mdc = VARIANTS[variant]
    model = _model(ldm, mdc).train()
    x, seeds = torch.randn(2, 3, 64, 64), torch.tensor([3, 4])
    with torch.no_grad():
        out = model(x, seeds=seeds, each_branch=True)
        logits, own = out["logits"], out["branches"]
        assert own.shape == (2, 1 + (ldm is not None) + (mdc is not None), 3)
        assert torch.equal(logits, model(x, seeds=seeds))  # the same pass, the same numbers
        torch.testing.assert_close(own.sum(1), logits, rtol=1e-5, atol=1e-5)
        # each branch's slice of the linear layer on its own pooled features
        features = model.branches(x, destruct=True, seeds=seeds)
        weights = model.classifier.weight[:, :, 0, 0].split(features[0].shape[1], dim=1)
        for b, (f, w) in enumerate(zip(features, weights, strict=True)):
            torch.testing.assert_close(own[:, b], f.mean((-2, -1)) @ w.T, rtol=1e-4, atol=1e-4)
        if ldm:  # in training the LDM branch sees the shuffled image, the plain one the image
            assert not torch.allclose(features[0], features[1], atol=1e-3)


def test_a_loss_per_branch_is_added_to_the_stacked_loss_with_its_weight():
    import torch.nn.functional as F

    from destseg.models.classifier_loss import LossTerms, classifier_loss

    model = _model(LDM, MDC).train()
    batch = {
        "image": torch.randn(2, 3, 64, 64),
        "seed": torch.tensor([1, 2]),
        "target": torch.tensor([[1.0, 0, 1], [0, 1, 0]]),
    }
    names = ("ldm", "plain", "mdc")
    with torch.no_grad():
        stacked, terms = classifier_loss(model, batch, 0.0, LossTerms(names))
        out = model(batch["image"], seeds=batch["seed"], each_branch=True)
        own = out["branches"]
        branches = [F.multilabel_soft_margin_loss(own[:, b], batch["target"]) for b in range(3)]
        expected = F.multilabel_soft_margin_loss(out["logits"], batch["target"])
        torch.testing.assert_close(stacked, expected)
        # each branch's own loss is reported whether it is trained on or not
        assert list(terms) == ["loss_ldm", "loss_plain", "loss_mdc"]
        torch.testing.assert_close(torch.stack(list(terms.values())), torch.stack(branches))
        weighted, _ = classifier_loss(model, batch, 0.0, LossTerms(names, branch_loss=0.5))
        torch.testing.assert_close(weighted, stacked + 0.5 * sum(branches) / 3)
    plain = _model(None, None).train()
    alone = classifier_loss(plain, batch, 0.0)  # one branch: nothing to report beside it
    assert isinstance(alone, torch.Tensor) and alone.requires_grad


@pytest.mark.parametrize("variant", ["ldm", "mdc", "both", "mdc3"])
def test_gradients_reach_the_encoder_through_every_enabled_branch(variant):
    ldm, mdc = VARIANTS[variant]
    model = _model(ldm, mdc).train()
    channels = model.encoder.out_channels
    for branch in range(model.classifier.in_channels // channels):
        model.zero_grad()
        with torch.no_grad():  # keep only this branch's slice of the classifier
            weight = torch.zeros_like(model.classifier.weight)
            weight[:, branch * channels : (branch + 1) * channels] = 1.0
            model.classifier.weight.copy_(weight)
        model(torch.randn(2, 3, 64, 64)).sum().backward()
        assert model.encoder.stem[0].weight.grad.abs().sum() > 0, f"branch {branch}"
        is_mdc = mdc is not None and branch == model.classifier.in_channels // channels - 1
        if model.mdc is not None:
            mdc_grad = model.mdc.convs[0].weight.grad
            assert (mdc_grad is not None and mdc_grad.abs().sum() > 0) == is_mdc


def test_ldm_branch_sees_the_destructed_image_in_training_only():
    model = _model(LDM, None)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        hat, plain = model.branches(x, destruct=False)
        assert torch.equal(hat, plain)
        model.train()
        torch.manual_seed(3)
        hat, plain = model.branches(x, destruct=True)
        assert not torch.allclose(hat, plain)


def test_checkpoint_records_the_variant_and_refuses_another(tmp_path):
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16, "ldm": LDM, "mdc": MDC}
    model = build_model(Classifier, config)
    save_model(tmp_path / "m.pt", model, config)
    loaded, stored = load_model(tmp_path / "m.pt", Classifier, torch.device("cpu"))
    assert stored["ldm"] == LDM and stored["mdc"] == MDC and loaded.mdc is not None
    baseline = build_model(Classifier, {**config, "ldm": None, "mdc": None})
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    with pytest.raises(RuntimeError):
        baseline.load_state_dict(state["state_dict"])
    state["config"] = {**config, "mdc": None}  # a file whose config lies about its variant
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="weights do not fit"):
        load_model(tmp_path / "wrong.pt", Classifier, torch.device("cpu"))


def test_the_mdc_learns_at_the_head_rate_like_every_new_layer():
    """IRN gives the layers it adds to the ImageNet backbone 10x the learning rate; the MDC's
    convolution and BatchNorm are new too."""
    model = Classifier("resnet18", 3, False, 16, ldm=LDM, mdc=MDC)
    body, head = model.param_groups(0.1, 10, 1e-4)
    assert (body["lr"], head["lr"]) == (0.1, 1.0)
    head_ids = {id(p) for p in head["params"]}
    assert all(id(p) in head_ids for p in model.mdc.parameters())
    assert all(id(p) in head_ids for p in model.classifier.parameters())
    assert {id(p) for p in body["params"]} == {id(p) for p in model.encoder.parameters()}
