import numpy as np
import torch
from torch import nn

from destseg.dataset.torch_dataset import same_size_batches
from destseg.evaluation.inference import classify

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
