"""studies/branch_profile.py splits the CAM into its branches' terms: they must add up to it."""

import torch

from destseg.cam.strided import upsample_strided
from destseg.models.classifier import Classifier
from studies import branch_profile


def test_the_branch_terms_add_up_to_the_cam_in_the_order_of_the_stacked_features():
    torch.manual_seed(0)
    ldm = {"grid": 4, "k": 1, "probability": 1.0}
    mdc = {"grid": 2, "position": 4, "shared": True, "activation": True}
    model = Classifier("resnet10", 3, False, 16, ldm=ldm, mdc=mdc).eval()
    # distinct weights per branch, so a wrong split or order shows
    with torch.no_grad():
        model.classifier.weight.normal_()
    image = torch.randn(3, 64, 80)
    terms = branch_profile.branch_cams(model, image)
    assert terms.shape == (3, 3, 64, 80)
    with torch.no_grad():
        cam = upsample_strided(model.cam(image[None]), (64, 80), 16)[0]
        features = model.branches(image[None], destruct=False)
        weight = model.classifier.weight[:, :, 0, 0]  # [w^ ; w ; w~] over 3 x 512 channels
        for b in range(3):
            direct = torch.einsum("kc,chw->khw", weight[:, 512 * b : 512 * (b + 1)], features[b][0])
            expected = upsample_strided(direct[None], (64, 80), 16)[0]
            torch.testing.assert_close(terms[b], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms.sum(0), cam, atol=1e-4, rtol=1e-4)
    assert branch_profile.branch_names(model) == ["LDM (w^.F)", "plain (w.F)", "MDC (w~.F~)"]
