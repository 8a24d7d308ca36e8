"""PyTorch datasets over a VOC-layout folder, with torchvision transforms v2.

Training transforms move image and mask together (``tv_tensors.Mask`` is resized with nearest
neighbour and padded with 255), so one pipeline serves the classifier and the segmenter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from destseg.dataset.layout import IGNORE_INDEX, VOCLayout, load_image, load_mask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize() -> v2.Transform:
    """uint8 image tensor to a float tensor normalised with the ImageNet statistics."""
    return v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array to a normalised (3, H, W) float tensor."""
    return normalize()(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)))


def train_transform(
    crop_size: int, scale_range: Sequence[float], color_jitter: float
) -> v2.Transform:
    """Random rescale, random crop (padded: image 0, mask 255), flip, colour jitter, normalise.

    The rescale factor is relative to a crop-sized image (``v2.ScaleJitter``), so it means the
    same on 128 px synthetic images and 500 px VOC photographs.
    """
    steps: list[v2.Transform] = [
        v2.ScaleJitter((crop_size, crop_size), scale_range=tuple(scale_range), antialias=True),
        v2.RandomCrop(
            crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        ),
        v2.RandomHorizontalFlip(),
    ]
    if color_jitter > 0:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    steps.append(normalize())
    return v2.Compose(steps)


def check_mask(path: Path, image: torch.Tensor, num_classes: int) -> np.ndarray:
    """The mask at ``path`` as int64, refused (naming the file) unless it has the image's size
    and holds only class indices 0..``num_classes`` or 255: the loss would otherwise fail
    inside torch ("Target 77 is out of bounds") without saying which file."""
    mask = load_mask(path)
    if mask.shape != tuple(image.shape[-2:]):
        raise ValueError(
            f"{path}: a mask of {mask.shape[0]}x{mask.shape[1]} for an image of "
            f"{image.shape[-2]}x{image.shape[-1]} (height x width)"
        )
    values = mask[mask != IGNORE_INDEX]
    if values.size and values.max() > num_classes:
        raise ValueError(
            f"{path}: value {int(values.max())} is not a class index 0..{num_classes} or 255"
        )
    return mask.astype(np.int64)


class VOCDataset(Dataset):
    """Images of one split with their multi-hot labels and, when asked, their masks.

    ``mask_dir`` chooses the masks: the ground truth (``SegmentationClass``) or a folder of
    pseudo-masks with the same file names. Items are dicts so that stages take what they need.
    """

    def __init__(
        self,
        layout: VOCLayout,
        ids: Sequence[str],
        transform: v2.Transform | None = None,
        mask_dir: Path | None = None,
        with_labels: bool = True,
    ):
        self.layout = layout
        self.ids = list(ids)
        self.transform = transform or normalize()
        self.mask_dir = mask_dir
        self.num_classes = len(layout.classes) - 1
        self.labels = layout.labels if with_labels else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        image = tv_tensors.Image(
            torch.from_numpy(load_image(self.layout.image_path(image_id))).permute(2, 0, 1)
        )
        item: dict = {"id": image_id}
        if self.mask_dir is not None:
            path = self.mask_dir / f"{image_id}.png"
            mask = tv_tensors.Mask(torch.from_numpy(check_mask(path, image, self.num_classes)))
            item["image"], item["mask"] = self.transform(image, mask)
        else:
            item["image"] = self.transform(image)
        if self.labels is not None:
            target = torch.zeros(self.num_classes)
            target[[c - 1 for c in self.labels[image_id]]] = 1
            item["target"] = target
        return item


def same_size_batches(dataset: Dataset, max_batch: int) -> Iterator[dict]:
    """The dataset's items in order, runs of consecutive items whose images have the same size
    collated into batches of at most ``max_batch``. Whole images (VOC's differ in size) are
    batched without the padding or resizing that would change their scores; on the synthetic
    data, where every image has one size, this is plain batching."""
    group: list[dict] = []
    for index in range(len(dataset)):
        item = dataset[index]
        if group and (len(group) == max_batch or item["image"].shape != group[0]["image"].shape):
            yield default_collate(group)
            group = []
        group.append(item)
    if group:
        yield default_collate(group)
