import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from destseg.dataset.layout import IGNORE_INDEX, load_mask, save_mask
from destseg.dataset.torch_dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOCDataset,
    image_to_tensor,
    train_transform,
)


def _denormalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return x * std + mean


def test_train_transform_moves_image_and_mask_together():
    """A mask drawn from the image itself must still match the image after the transform."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    inside = (yy - 15) ** 2 + (xx - 25) ** 2 < 100
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    image[0][inside] = 255
    mask = tv_tensors.Mask(inside.long())
    transform = train_transform(48, (0.5, 1.5), color_jitter=0.0)
    for _ in range(10):
        x, m = transform(tv_tensors.Image(image), mask)
        assert x.shape == (3, 48, 48) and m.shape == (48, 48)
        red = _denormalize(x)[0]
        padded = m == IGNORE_INDEX
        agree = ((red > 0.5) == (m == 1))[~padded].float().mean()
        assert agree > 0.97


def test_padding_is_ignore_in_the_mask_and_black_in_the_image():
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.full((3, 10, 10), 128, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(10, 10, dtype=torch.long))
    # rescaled to half the crop size (16 px), then padded to the 32 px crop
    x, m = train_transform(32, (0.5, 0.5), 0.0)(image, mask)
    padded = m == IGNORE_INDEX
    assert padded.sum() == 32 * 32 - 16 * 16
    torch.testing.assert_close(_denormalize(x)[:, padded], torch.zeros(3, int(padded.sum())))


def test_dataset_items(tiny_layout):
    ids = tiny_layout.ids("train")
    dataset = VOCDataset(tiny_layout, ids, mask_dir=tiny_layout.root / "SegmentationClass")
    item = dataset[0]
    assert item["id"] == ids[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape[0] == 3
    assert item["mask"].shape == item["image"].shape[1:]
    expected = torch.zeros(len(tiny_layout.classes) - 1)
    expected[[c - 1 for c in tiny_layout.labels[ids[0]]]] = 1
    torch.testing.assert_close(item["target"], expected)


def test_image_to_tensor_normalises():
    x = image_to_tensor(np.full((4, 5, 3), 255, dtype=np.uint8))
    assert x.shape == (3, 4, 5)
    torch.testing.assert_close(_denormalize(x), torch.ones(3, 4, 5))



@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (lambda m: np.where(m == 1, 77, m), "value 77 is not a class index"),
        (lambda m: m[:-3], "a mask of"),
    ],
)
def test_a_pseudo_mask_that_does_not_fit_names_its_file(tiny_layout, tmp_path, mask, expected):
    image_id = tiny_layout.ids("train")[0]
    gt = load_mask(tiny_layout.mask_path(image_id))
    gt[:4, :4] = 1  # at least one pixel of class 1
    save_mask(tmp_path / f"{image_id}.png", mask(gt).astype(np.uint8))
    dataset = VOCDataset(tiny_layout, [image_id], mask_dir=tmp_path)
    with pytest.raises(ValueError, match=expected) as err:
        dataset[0]
    assert str(err.value).startswith(str(tmp_path / f"{image_id}.png"))
