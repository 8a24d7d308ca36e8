"""AffinityNet, its confident-region labels, its scoring, and CAM propagation over a dataset."""

import numpy as np
import pytest
import torch
from conftest import listed
from torch import nn
from torch.utils.data import Dataset

from destseg.affinity.pairs import affinity_loss, grid_labels, training_pairs
from destseg.affinity.propagation import propagate_cams
from destseg.affinity.validation import affinity_scores
from destseg.cam.store import load_cam, save_cam
from destseg.dataset.layout import IGNORE_INDEX, load_mask
from destseg.models.affinity_net import AffinityNet, neighbour_offsets, pair_affinity
from destseg.models.classifier import Classifier
from destseg.models.model_file import load_model, save_model
from destseg.refine.crf import DenseCRF
from destseg.refine.labellers import confident_labels, threshold_pseudo_mask
from destseg.refine.labelling import label_split

CONFIG = {"backbone": "resnet18", "output_stride": 16, "feature_stride": 4, "radius": 3}


@pytest.mark.parametrize(("feature_stride", "grid"), [(4, (16, 24)), (8, (8, 12))])
def test_affinity_net_predicts_one_affinity_per_pair_on_its_grid(feature_stride, grid):
    torch.manual_seed(0)
    model = AffinityNet("resnet18", False, 16, feature_stride, radius=3)
    affinity = model(torch.randn(2, 3, 64, 96))
    assert affinity.shape == (2, len(neighbour_offsets(3)), *grid)
    assert ((affinity > 0) & (affinity <= 1)).all()


def test_affinity_net_trains_every_layer():
    torch.manual_seed(0)
    model = AffinityNet("resnet18", False, 16, 4, radius=3)
    affinity = model(torch.randn(2, 3, 32, 32))
    labels = {kind: torch.rand(affinity.shape) > 0.5 for kind in ("bg", "fg", "neg")}
    affinity_loss(affinity, labels)["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    groups = model.param_groups(0.1, 10, 1e-4)
    assert [g["lr"] for g in groups] == [0.1, 1.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_affinity_net_rejects_other_strides():
    with pytest.raises(ValueError, match="feature_stride"):
        AffinityNet("resnet18", False, 16, 2, radius=3)


def test_affinity_model_file_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AffinityNet(**CONFIG, pretrained=False).eval()
    save_model(tmp_path / "model.pt", model, CONFIG)
    loaded, config = load_model(tmp_path / "model.pt", AffinityNet, torch.device("cpu"))
    x = torch.randn(1, 3, 32, 32)
    assert config == CONFIG and loaded.radius == 3
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="expected a classifier"):
        load_model(tmp_path / "model.pt", Classifier, torch.device("cpu"))


def test_grid_labels_take_one_pixel_never_a_blend():
    mask = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 255, 255], [0, 0, 255, 255]]])
    assert grid_labels(mask, (2, 2)).tolist() == [[[1, 2], [0, 255]]]


def test_confident_labels_by_hand():
    cam = np.array([[[0.9, 0.5, 0.2, 0.01]], [[0.0, 0.6, 0.04, 0.02]]], dtype=np.float32)
    image = np.zeros((1, 4, 3), dtype=np.uint8)
    labels = confident_labels(image, cam, np.array([2, 5]), conf_fg=0.3, conf_bg=0.05, crf=None)
    # class 2 sure; class 5 wins; 0.2 is neither sure nor background; all below 0.05: background
    assert labels.tolist() == [[2, 5, IGNORE_INDEX, 0]]
    with pytest.raises(ValueError, match="conf_bg"):
        confident_labels(image, cam, np.array([2, 5]), conf_fg=0.1, conf_bg=0.2, crf=None)


def test_confident_labels_with_the_crf_follow_the_image():
    """A blurred CAM over a sharp square: with the CRF the confident foreground keeps to the
    square instead of spilling around it."""
    yy, xx = np.mgrid[0:48, 0:48]
    square = (abs(yy - 24) < 10) & (abs(xx - 24) < 10)
    image = np.where(square[..., None], [220, 30, 30], [30, 30, 220]).astype(np.uint8)
    cam = np.exp(-((yy - 24) ** 2 + (xx - 24) ** 2) / (2 * 11.0**2))[None].astype(np.float32)
    plain = confident_labels(image, cam, np.array([1]), 0.3, 0.05, crf=None)
    refined = confident_labels(image, cam, np.array([1]), 0.3, 0.05, crf=DenseCRF())
    for labels in (plain, refined):
        assert set(np.unique(labels)) <= {0, 1, IGNORE_INDEX}
    assert (plain[~square] == 1).mean() > 0.1  # the CAM at 0.3 is a disc wider than the square
    assert (refined[square] == 1).mean() > 0.95 and (refined[~square] == 1).mean() < 0.02


class _LabelImages(Dataset):
    """Images whose first channel is the label map, with that map as their mask."""

    def __init__(self, masks):
        self.masks = masks

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, i):
        mask = self.masks[i]
        return {"image": mask[None].float().repeat(3, 1, 1), "mask": mask}


class _Oracle(nn.Module):
    """Affinity 1 between pixels of equal first channel, 0 otherwise (or the reverse)."""

    radius = 2

    def __init__(self, inverted=False):
        super().__init__()
        self.inverted = inverted

    def forward(self, x):
        one_hot = nn.functional.one_hot(x[:, 0].long(), 4).permute(0, 3, 1, 2).float() * 100
        affinity = pair_affinity(one_hot, self.radius)
        return 1 - affinity if self.inverted else affinity


def test_affinity_scores_of_a_perfect_and_of_an_inverted_predictor():
    torch.manual_seed(0)
    dataset = _LabelImages([torch.randint(0, 4, (6, 7)) for _ in range(3)])
    perfect = affinity_scores(_Oracle(), dataset, torch.device("cpu"))
    assert perfect == {"pos_accuracy": 1.0, "neg_accuracy": 1.0, "balanced_accuracy": 1.0}
    inverted = affinity_scores(_Oracle(inverted=True), dataset, torch.device("cpu"))
    assert inverted["balanced_accuracy"] == 0.0


def test_training_pairs_match_the_grid_labels():
    model = _Oracle()
    mask = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2]]])
    affinity = torch.ones(1, len(neighbour_offsets(2)), 1, 2)
    pairs = training_pairs(model.radius, affinity, mask)
    assert pairs["neg"].sum() == 1 and pairs["fg"].sum() == 0  # one pair: class 1 | class 2


def test_propagated_cams_keep_the_cam_format(tiny_layout, tmp_path):
    torch.manual_seed(0)
    model = AffinityNet(**CONFIG, pretrained=False).eval()
    ids = tiny_layout.ids("train")[:3]
    for image_id in ids:
        classes = tiny_layout.labels[image_id]
        cam = np.random.default_rng(0).random((len(classes), 64, 64)).astype(np.float32)
        save_cam(tmp_path / "cam" / f"{image_id}.npz", classes, cam)
    propagate_cams(
        model,
        tiny_layout,
        ids,
        cam_dir=tmp_path / "cam",
        out_dir=tmp_path / "out",
        beta=8.0,
        exp_times=3,
        normalize="per_class",
        device=torch.device("cpu"),
    )
    for image_id in ids:
        classes, cam = load_cam(tmp_path / "cam" / f"{image_id}.npz")
        out_classes, walked = load_cam(tmp_path / "out" / f"{image_id}.npz")
        assert np.array_equal(out_classes, classes) and walked.shape == cam.shape
        np.testing.assert_allclose(walked.max(axis=(1, 2)), 1.0, atol=2e-3)  # float16 storage


def test_label_split_scores_what_it_writes(tiny_layout, tmp_path):
    """CAMs equal to the true masks score mIoU 1 at any threshold in (0, 1); without scored
    images every image is still labelled and only the ignored share is reported."""
    ids = tiny_layout.ids("train")[:4]
    for image_id in ids:
        classes = tiny_layout.labels[image_id]
        mask = load_mask(tiny_layout.mask_path(image_id))
        cam = np.stack([(mask == c).astype(np.float32) for c in classes])
        save_cam(tmp_path / "cam" / f"{image_id}.npz", classes, cam)
    (tmp_path / "out").mkdir()
    scores, confusion = label_split(
        tiny_layout,
        ids,
        set(ids[:2]),
        cam_dir=tmp_path / "cam",
        out_dir=tmp_path / "out",
        labeller=lambda image, cam, classes: threshold_pseudo_mask(image, cam, classes, 0.5),
        workers=1,
        description="test",
    )
    assert scores["miou"] == 1.0 and scores["ignored_fraction"] == 0.0
    # the confusion of the two scored images only: all on the diagonal, every labelled pixel
    truth = [load_mask(tiny_layout.mask_path(i)) for i in ids[:2]]
    assert confusion.trace() == confusion.sum() == sum(int((m != 255).sum()) for m in truth)
    assert sorted(p.stem for p in listed(tmp_path / "out")) == sorted(ids)
    # nothing scored (splits.score_cams: null): every image labelled, the ignored share alone
    (tmp_path / "unscored").mkdir()
    scores, confusion = label_split(
        tiny_layout,
        ids,
        set(),
        cam_dir=tmp_path / "cam",
        out_dir=tmp_path / "unscored",
        labeller=lambda image, cam, classes: threshold_pseudo_mask(image, cam, classes, 0.5),
        workers=1,
        description="test",
    )
    assert scores == {"ignored_fraction": 0.0} and confusion.sum() == 0
    assert sorted(p.stem for p in listed(tmp_path / "unscored")) == sorted(ids)


def test_features_stay_float32_under_bf16_autocast():
    """The mixing layer and its ELU run in float32: the affinity is computed in float32 and
    features rounded to bf16 first would lose what that buys."""
    torch.manual_seed(0)
    model = AffinityNet("resnet10", False, 16, 4, radius=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.features(x)
    assert features.dtype == torch.float32
