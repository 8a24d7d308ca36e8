import numpy as np
import torch
from torch import nn

from destseg.dataset.torch_dataset import same_size_batches
from destseg.evaluation.inference import classify, validation_confusion
from destseg.evaluation.metrics import confusion_matrix

# Image sizes in dataset order: runs of equal sizes, one longer than the batch.
SIZES = [(8, 8), (8, 8), (8, 8), (8, 12), (8, 12), (8, 8)]


def _dataset():
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "id": f"im{i}",
            "image": torch.randn(3, *size, generator=generator),
            "target": torch.tensor([float(i % 2), 1.0]),
        }
        for i, size in enumerate(SIZES)
    ]


class PerImageNet(nn.Module):
    """A classifier whose score of an image depends on that image alone, whatever it is
    batched with (no batch norm in training mode, no padding)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_batches_keep_order_and_never_mix_sizes():
    batches = list(same_size_batches(_dataset(), max_batch=2))
    assert [b["id"] for b in batches] == [["im0", "im1"], ["im2"], ["im3", "im4"], ["im5"]]
    assert [tuple(b["image"].shape) for b in batches] == [
        (2, 3, 8, 8),
        (1, 3, 8, 8),
        (2, 3, 8, 12),
        (1, 3, 8, 8),
    ]


def test_batched_scores_equal_image_by_image_scores():
    model, dataset = PerImageNet(), _dataset()
    batched, targets = classify(model, dataset, torch.device("cpu"), batch_size=4)
    single, single_targets = classify(model, dataset, torch.device("cpu"), batch_size=1)
    with torch.no_grad():
        direct = [torch.sigmoid(model(item["image"][None]))[0].numpy() for item in dataset]
    np.testing.assert_allclose(batched, np.stack(direct), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single, np.stack(direct), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(targets, np.stack([item["target"] for item in dataset]))
    np.testing.assert_array_equal(targets, single_targets)


class ThresholdSegmenter(nn.Module):
    """Class 1 where the first channel is positive, 2 where it is below -1, else 0; a batch
    norm in training mode would make a batch's predictions depend on each other."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x):
        x = self.norm(x)[:, :1]
        return torch.cat([torch.zeros_like(x), x, -1 - x], 1)


def test_validation_confusion_counts_each_pixel_of_the_whole_images_once():
    dataset = _dataset()
    generator = torch.Generator().manual_seed(1)
    for item in dataset:
        item["mask"] = torch.randint(0, 3, item["image"].shape[1:], generator=generator)
        item["mask"][0, :3] = 255  # ignored
    model = ThresholdSegmenter().train()
    confusion = validation_confusion(model, dataset, 3, torch.device("cpu"), batch_size=4)
    assert model.training  # restored
    expected = np.zeros((3, 3), dtype=np.int64)
    for item in dataset:  # by hand: the rule on the raw image (a fresh eval-mode norm only
        # divides by sqrt(1 + 1e-5): no pixel of these seeded images lies that close to 0 or -1)
        first = item["image"][0]
        pred = torch.where(first > 0, 1, torch.where(first < -1, 2, 0)).numpy()
        expected += confusion_matrix(item["mask"].numpy(), pred, 3)
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == sum(item["mask"].ne(255).sum().item() for item in dataset)


def test_validation_scores_what_evaluate_scores_at_one_scale_without_flip(tiny_layout, tmp_path):
    from destseg.dataset.torch_dataset import VOCDataset
    from destseg.evaluation.inference import evaluate_segmenter
    from destseg.models.model_file import build_model
    from destseg.models.segmenter import Segmenter

    torch.manual_seed(0)
    num_classes = len(tiny_layout.classes)
    config = {"backbone": "resnet10", "num_classes": num_classes, "output_stride": 16}
    model = build_model(Segmenter, config).eval()
    ids = tiny_layout.ids("val")
    masks = tiny_layout.root / "SegmentationClass"
    dataset = VOCDataset(tiny_layout, ids, mask_dir=masks, with_labels=False)
    cpu = torch.device("cpu")
    # one image at a time as evaluate predicts (that batching changes nothing is tested above)
    validated = validation_confusion(model, dataset, num_classes, cpu, batch_size=1)
    evaluated, per_image = evaluate_segmenter(
        model, tiny_layout, ids, scales=[1.0], flip=False, device=cpu, out_dir=tmp_path
    )
    assert evaluated.sum() > 0
    np.testing.assert_array_equal(validated, evaluated)
    # each image's own scores, from its own prediction and mask
    from destseg.dataset.layout import load_mask
    from destseg.evaluation.metrics import segmentation_scores

    for image_id, (miou, accuracy) in zip(ids, per_image, strict=True):
        pred = load_mask(tmp_path / f"{image_id}.png")
        own = confusion_matrix(tiny_layout.ground_truth(image_id, pred.shape), pred, num_classes)
        expected = segmentation_scores(own)
        assert (miou, accuracy) == (expected["miou"], expected["pixel_accuracy"])
