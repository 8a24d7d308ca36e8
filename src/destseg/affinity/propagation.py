"""CAM propagation over a dataset: AffinityNet's affinities of each image, then the walk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from destseg.affinity.walk import propagate_cam
from destseg.cam.store import load_cam, save_cam
from destseg.dataset.layout import VOCLayout, load_image
from destseg.dataset.torch_dataset import image_to_tensor
from destseg.models.affinity_net import AffinityNet
from destseg.runtime.device import deterministic
from destseg.runtime.overlap import overlaps, prefetch, writer
from destseg.runtime.pace import paced


@torch.no_grad()
def propagate_cams(
    model: AffinityNet,
    layout: VOCLayout,
    ids: Sequence[str],
    *,
    cam_dir: Path,
    out_dir: Path,
    beta: float,
    exp_times: int,
    normalize: str,
    device: torch.device,
    progress: bool = True,
) -> None:
    """Write the propagated CAMs of every image of ``ids`` to ``out_dir``, in the format of the
    CAM files (same classes, image size, values in [0, 1]), so refinement reads either. The
    network and the walk both run on ``device``; ``normalize`` as in :func:`propagate_cam`; a
    progress bar with ``progress`` (the main process of several shows it)."""
    model.eval()

    def load(image_id: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        image = image_to_tensor(load_image(layout.image_path(image_id)))
        size = tuple(image.shape[-2:])
        classes, cam = load_cam(cam_dir / f"{image_id}.npz", len(layout.classes), size)
        return image, classes, cam

    def store(image_id: str, classes: np.ndarray, walked: np.ndarray) -> None:
        save_cam(out_dir / f"{image_id}.npz", classes, walked)

    # reading and writing overlap the network and the walk (destseg.runtime.overlap)
    threaded = overlaps(device)
    with writer(threaded) as files:
        loaded = prefetch(ids, load, threaded)
        for image_id, (image, classes, cam) in paced(
            loaded, len(ids), "propagate", quiet=not progress
        ):
            image = image.to(device)
            affinity = model(image[None])[0].float()
            cam = torch.from_numpy(cam).to(device)
            # float32 whatever the caller's autocast: powers of a transition matrix lose too
            # much in bf16 or fp16
            # deterministic: the same walk gives the same file on a GPU too (index_add_ on CUDA
            # adds in any order otherwise)
            with torch.autocast(device.type, enabled=False), deterministic():
                walked = propagate_cam(
                    cam, affinity, model.radius, beta, exp_times, model.feature_stride, normalize
                )
            files.submit(store, image_id, classes, walked.cpu().numpy())
