"""studies/branch_cams.py: each branch's term as a CAM of its own, thresholded and profiled as
make_cam and the CAM profile do."""

import pytest
import torch
from conftest import TINY

from destseg.cam.profile import REGIONS
from destseg.evaluation.thresholds import candidates
from destseg.models.classifier import Classifier
from studies import branch_cams

LDM = {"grid": 4, "k": 1, "probability": 1.0}
MDC = {"grid": 2, "position": 4, "shared": True, "activation": True}


def _model():
    torch.manual_seed(0)
    model = Classifier("resnet10", 3, False, 16, ldm=LDM, mdc=MDC).eval()
    with torch.no_grad():  # distinct weights per branch, so a wrong slice shows
        model.classifier.weight.normal_()
    return model


def test_a_branchs_classifier_makes_that_branchs_term_and_the_terms_add_up():
    model = _model()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.branches(x, destruct=False)
        weight = model.classifier.weight[:, :, 0, 0]
        terms = []
        for b in range(3):
            alone = branch_cams.branch_classifier(model, b).cam(x)
            direct = torch.einsum("kc,nchw->nkhw", weight[:, 512 * b : 512 * (b + 1)], features[b])
            torch.testing.assert_close(alone, direct, rtol=1e-4, atol=1e-4)
            terms.append(alone)
        torch.testing.assert_close(sum(terms), model.cam(x), rtol=1e-4, atol=1e-4)
    # the model itself is left as it was
    assert torch.equal(model.classifier.weight, _model().classifier.weight)


def test_every_branch_and_the_stack_get_a_threshold_a_score_and_a_profile(tiny_layout):
    splits = {"train": "train", "score_cams": "report", "tune": "tune"}
    table = branch_cams.branch_cam_profiles(
        _model(), tiny_layout, splits, TINY, 0, scales=[1.0], flip=False
    )
    assert list(table["branch"]) == ["stacked", "ldm", "plain", "mdc"]
    assert table["threshold"].isin(candidates()).all()
    for column in ("mIoU", "tune mIoU", *(f"{r} share" for r in REGIONS)):
        assert table[column].between(0, 1).all(), column
    # the stacked row is the CAM make_cam makes: profiled on its own, the same numbers
    stacked = branch_cams.cam_profile(_model(), tiny_layout, splits, TINY, 0, [1.0], False)
    assert table.iloc[0].drop("branch").to_dict() == pytest.approx(stacked)
    # each branch's map is its own (distinct weights: no two rows alike)
    assert table.drop(columns="branch").round(6).drop_duplicates().shape[0] == 4
