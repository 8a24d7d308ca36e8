"""Where a CAM is strong on the synthetic data: on the parts, on the rest of the objects (the
bodies) or on the background.

The synthetic dataset does not store its part maps, so they are rendered again from the spec
and seed that made the images (images are deterministic). A classifier that relies on the
discriminative parts has a CAM much stronger on the parts than on the bodies: the partial
activation that destruction learning is meant to fix. The profile measures it per region as
the mean normalised CAM of the labelled class and the share of the region's pixels above the
background threshold (for the background: false positives).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
import pandas as pd

from destseg.dataset.sources.synthetic import SyntheticSpec, generate

REGIONS = ("part", "body", "background")

# image id -> (class indices (k,), normalised CAMs (k, H, W)), e.g. destseg.cam.store.load_cam
CamReader = Callable[[str], tuple[np.ndarray, np.ndarray]]


def class_regions(mask: np.ndarray, parts: np.ndarray, cls: int) -> dict[str, np.ndarray]:
    """The pixels (boolean maps) of each region for class ``cls``: the parts of its objects,
    the rest of its objects (the bodies), and the background."""
    objects = mask == cls
    return {"part": objects & parts, "body": objects & ~parts, "background": mask == 0}


def region_profile(
    spec: SyntheticSpec,
    seed: int,
    image_ids: Collection[str],
    read_cam: CamReader,
    threshold: float,
) -> pd.DataFrame:
    """Per region (rows ``part``, ``body``, ``background``): ``mean_cam`` and
    ``share_above`` (the share of its pixels whose CAM exceeds ``threshold``).

    Each labelled class of each image of ``image_ids`` contributes one value per region (its
    CAM over its own objects' parts, over the rest of those objects, over the background), and
    the values are averaged, so every object counts alike whatever its size.
    """
    rows = []
    for _, image_id, _, mask, parts in generate(spec, seed):
        if image_id not in image_ids:
            continue
        classes, cam = read_cam(image_id)
        for k, cls in enumerate(classes):
            for region, pixels in class_regions(mask, parts, cls).items():
                if pixels.any():
                    values = cam[k][pixels]
                    rows.append(
                        {
                            "region": region,
                            "mean_cam": float(values.mean()),
                            "share_above": float((values > threshold).mean()),
                        }
                    )
    if not rows:
        raise ValueError("no image of the list has a labelled class: nothing to profile")
    return pd.DataFrame(rows).groupby("region").mean().reindex(list(REGIONS))
