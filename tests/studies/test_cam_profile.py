"""The CAM profile (part / body / background) on CAMs whose values per region are known."""

import numpy as np
import pytest
from conftest import TINY

from destseg.cam.profile import region_profile
from destseg.dataset.layout import labels_from_mask
from destseg.dataset.sources.synthetic import generate

PART, BODY, BACKGROUND = 1.0, 0.5, 0.1


def _layered_cams(image_ids):
    """Each labelled class's CAM: PART on its parts, BODY on the rest of its objects,
    BACKGROUND elsewhere (also on other classes' objects)."""
    cams = {}
    for _, image_id, _, mask, parts in generate(TINY, 0):
        if image_id in image_ids:
            classes = np.array(labels_from_mask(mask))
            cam = np.full((len(classes), *mask.shape), BACKGROUND, np.float32)
            for k, cls in enumerate(classes):
                cam[k][mask == cls] = BODY
                cam[k][(mask == cls) & parts] = PART
            cams[image_id] = (classes, cam)
    return cams


def _ids():
    return {image_id for split, image_id, *_ in generate(TINY, 0) if split == "train"}


def test_region_profile_finds_each_region_value_and_the_share_above_the_threshold():
    cams = _layered_cams(_ids())
    high = region_profile(TINY, 0, cams, cams.__getitem__, threshold=0.7)
    assert high["mean_cam"].to_dict() == pytest.approx(
        {"part": PART, "body": BODY, "background": BACKGROUND}
    )
    assert high["share_above"].to_dict() == {"part": 1.0, "body": 0.0, "background": 0.0}
    low = region_profile(TINY, 0, cams, cams.__getitem__, threshold=0.3)
    assert low["share_above"].to_dict() == {"part": 1.0, "body": 1.0, "background": 0.0}


def test_region_profile_reads_only_the_listed_images():
    listed = sorted(_ids())[:3]
    cams = _layered_cams(set(listed))
    profile = region_profile(TINY, 0, set(listed), cams.__getitem__, threshold=0.7)  # KeyError else
    assert list(profile.index) == ["part", "body", "background"]
    with pytest.raises(ValueError, match="nothing to profile"):
        region_profile(TINY, 0, set(), cams.__getitem__, threshold=0.7)
