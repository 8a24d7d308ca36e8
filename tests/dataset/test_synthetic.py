import json

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from destseg.dataset.layout import IGNORE_INDEX, VOCLayout, labels_from_mask, load_mask, voc_palette
from destseg.dataset.sources.synthetic import (
    CONSTELLATIONS,
    TUNE_EVERY,
    SyntheticSpec,
    generate,
    write_dataset,
)


def test_same_seed_same_dataset_other_seed_other_dataset():
    first = list(generate(TINY, seed=3))
    again = list(generate(TINY, seed=3))
    other = list(generate(TINY, seed=4))
    for a, b in zip(first, again, strict=True):
        assert a[:2] == b[:2]
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[3], b[3])
    assert any(not np.array_equal(a[2], c[2]) for a, c in zip(first, other, strict=True))


def test_an_image_does_not_depend_on_the_number_of_images():
    small = next(generate(TINY, seed=0))
    bigger = next(generate(SyntheticSpec(**{**TINY.__dict__, "train_images": 50}), seed=0))
    np.testing.assert_array_equal(small[2], bigger[2])


def test_voc_layout_palette_and_splits(tiny_layout):
    assert tiny_layout.classes == TINY.class_names()
    train, val = tiny_layout.ids("train"), tiny_layout.ids("val")
    assert len(train) == TINY.train_images and len(val) == TINY.val_images
    assert not set(train) & set(val)
    for image_id in train + val:
        with Image.open(tiny_layout.image_path(image_id)) as image:
            assert image.mode == "RGB" and image.size == (TINY.image_size, TINY.image_size)
        with Image.open(tiny_layout.mask_path(image_id)) as mask:
            assert mask.mode == "P"
            assert mask.getpalette()[: 3 * 256] == voc_palette()
        values = set(np.unique(load_mask(tiny_layout.mask_path(image_id))))
        assert values <= set(range(TINY.num_classes + 1)) | {IGNORE_INDEX}


def test_labels_are_the_classes_in_the_masks(tiny_layout):
    raw = json.loads((tiny_layout.root / "labels.json").read_text())
    for image_id, indices in tiny_layout.labels.items():
        mask = load_mask(tiny_layout.mask_path(image_id))
        assert indices == labels_from_mask(mask)
        assert indices, "every image holds at least one object"
        assert raw[image_id] == [tiny_layout.classes[i] for i in indices]


def test_the_part_is_small_and_the_body_large():
    """The property WSSS needs: the discriminative part covers a small share of the object."""
    spec = SyntheticSpec(num_classes=2, image_size=96, train_images=20, val_images=1)
    shares = []
    for *_, mask, parts in generate(spec, 1):
        objects = (mask > 0) & (mask != IGNORE_INDEX)
        assert not (parts & (mask == 0)).any(), "parts lie on objects"
        shares.append(parts.sum() / objects.sum())
    assert 0.005 < np.mean(shares) < 0.1


def test_parts_carry_their_class_colour_and_bodies_do_not():
    spec = SyntheticSpec(num_classes=2, train_images=10, val_images=1, noise=0.0)
    plain = SyntheticSpec(**{**spec.__dict__, "part_saliency": 0.0})
    for (*_, image, _, parts), (*_, image_plain, _, _) in zip(
        generate(spec, 2), generate(plain, 2), strict=True
    ):
        differs = np.abs(image.astype(int) - image_plain.astype(int)).sum(-1) > 0
        np.testing.assert_array_equal(differs & ~parts, np.zeros_like(parts))


def test_boundary_band_is_ignored():
    mask = next(generate(SyntheticSpec(boundary_ignore=2, train_images=1), seed=0))[3]
    assert (mask == IGNORE_INDEX).any()
    mask = next(generate(SyntheticSpec(boundary_ignore=0, train_images=1), seed=0))[3]
    assert not (mask == IGNORE_INDEX).any()


def test_invalid_spec_names_the_knob():
    with pytest.raises(ValueError, match="body_saliency"):
        SyntheticSpec(body_saliency=2.0)


def test_write_dataset_counts(tmp_path):
    layout = VOCLayout(tmp_path)
    counts = write_dataset(layout, TINY, seed=1)
    tune = -(-TINY.train_images // TUNE_EVERY)
    assert counts == {
        "train": TINY.train_images,
        "val": TINY.val_images,
        "tune": tune,
        "report": TINY.train_images - tune,
    }
    # tune and report split train in two: thresholds are never chosen on reported images
    assert sorted(layout.ids("tune") + layout.ids("report")) == layout.ids("train")


def _part_distance(part_offset: float) -> float:
    """Mean distance from an object's centroid to its part's, in equivalent object radii."""
    spec = SyntheticSpec(
        num_classes=3, image_size=96, train_images=24, val_images=1, max_objects=1, clutter=0.0,
        part_offset=part_offset,
    )  # fmt: skip
    distances = []
    for _, _, _, mask, parts in generate(spec, seed=0):
        objects = (mask > 0) & (mask != 255)
        radius = np.sqrt(objects.sum() / np.pi)
        centre = np.argwhere(objects).mean(0)
        distances.append(np.linalg.norm(np.argwhere(parts).mean(0) - centre) / radius)
    return float(np.mean(distances))


def test_part_offset_puts_the_part_towards_one_end_of_the_body():
    # offset 0: anywhere within 0.35 radii of the centre; 0.4: 0.4-0.75 radii along the long axis
    assert _part_distance(0.0) < 0.3 < 0.45 < _part_distance(0.4)


def test_body_thinness_makes_elongated_bodies():
    def elongation(thinness: float) -> float:
        """Mean ratio of the two principal axes of the objects (1: round)."""
        spec = SyntheticSpec(
            num_classes=3, image_size=96, train_images=16, val_images=1, max_objects=1,
            clutter=0.0, body_thinness=thinness,
        )  # fmt: skip
        ratios = []
        for _, _, _, mask, _ in generate(spec, seed=0):
            points = np.argwhere((mask > 0) & (mask != 255)).astype(float)
            variances = np.linalg.eigvalsh(np.cov(points.T))
            ratios.append(np.sqrt(variances[0] / variances[1]))
        return float(np.mean(ratios))

    # aspect 0.6-1 by default; halved: 0.3-0.5 (borders cut by the image make it approximate)
    assert elongation(1.0) > 0.65 and elongation(0.5) < 0.5


CONSTELLATION = SyntheticSpec(
    num_classes=6,
    image_size=128,
    train_images=12,
    val_images=1,
    max_objects=1,
    min_object_size=0.6,
    max_object_size=0.8,
    part_size=0.08,
    part_style="constellation",
    part_span=0.6,
    body_thinness=1.0,
    noise=0.0,
)


def test_constellations_have_four_dots_and_survive_a_left_right_flip_unchanged():
    patterns = list(CONSTELLATIONS.values())
    assert all(len(pattern) == 4 for pattern in patterns)
    for pattern in patterns:  # a flip (training augmentation) must not turn one into another
        assert sorted((dy, -dx) for dy, dx in pattern) == sorted(pattern)
    assert len({tuple(sorted(p)) for p in patterns}) == len(patterns)
    assert CONSTELLATION.class_names()[1:] == list(CONSTELLATIONS)[:6]


def test_a_constellation_is_white_dots_spread_wider_than_a_ldm_cell():
    """Every dot looks the same whatever the class, and the dots of one object lie farther
    apart than the 32 px cells of the demo's LDM (grid 4 on 128 px): cut into cells and
    shuffled, the arrangement, the only class evidence of the part, is gone."""
    for _, _, image, mask, parts in generate(CONSTELLATION, seed=0):
        assert (image[parts] == 255).all()  # white, the same colour for every class
        rows, cols = np.nonzero(parts)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) > 128 // 4
        assert len(labels_from_mask(mask)) == 1


def test_the_constellation_regime_draws_the_same_images_but_for_the_parts():
    shape = SyntheticSpec(**{**CONSTELLATION.__dict__, "part_style": "shape"})
    for (*_, image, mask, dots), (*_, image_shape, mask_shape, part) in zip(
        generate(CONSTELLATION, 1), generate(shape, 1), strict=True
    ):
        elsewhere = ~(dots | part)
        np.testing.assert_array_equal(image[elsewhere], image_shape[elsewhere])
        band = (mask == IGNORE_INDEX) | (mask_shape == IGNORE_INDEX)
        np.testing.assert_array_equal(mask[elsewhere & ~band], mask_shape[elsewhere & ~band])


def test_a_constellation_turns_with_its_frame_and_a_flip_leaves_it_itself():
    from destseg.dataset.sources.synthetic import _constellation

    yy, xx = np.mgrid[0:96, 0:96].astype(float)
    # a row laid out along +x is the column laid out as written
    row, column = CONSTELLATIONS["row"], CONSTELLATIONS["column"]
    np.testing.assert_array_equal(
        _constellation(yy, xx, 48, 48, row, 30, 4, down=(0.0, 1.0)),
        _constellation(yy, xx, 48, 48, column, 30, 4),
    )
    # the mirror image of a constellation in any frame is the same constellation in the mirrored
    # frame (the centre at x = 48 lies on the flip's axis of a 97 px wide grid)
    yy, xx = np.mgrid[0:97, 0:97].astype(float)
    down = (np.sin(0.7), np.cos(0.7))
    for pattern in CONSTELLATIONS.values():
        dots = _constellation(yy, xx, 40, 48, pattern, 25, 3, down=down)
        mirrored = _constellation(yy, xx, 40, 48, pattern, 25, 3, down=(down[0], -down[1]))
        np.testing.assert_array_equal(dots[:, ::-1], mirrored)


def test_the_body_frame_points_the_pattern_at_the_body_centre():
    """With ``part_frame: body`` and the part at one end of the body, a column runs along the
    body's long axis: its dots line up with the body's centre."""
    spec = SyntheticSpec(
        **{**CONSTELLATION.__dict__, "part_frame": "body", "part_offset": 0.4, "num_classes": 2}
    )
    for _, _, _, mask, dots in generate(spec, 0):
        if not (mask == 2).any():  # class 2: the column
            continue
        ys, xs = np.nonzero(dots & (mask == 2))
        object_y, object_x = np.nonzero(mask == 2)
        centre = np.array([object_y.mean(), object_x.mean()])
        points = np.stack([ys, xs], 1) - centre
        # the dots and the object's centre lie on one line: the points' second singular value
        # (spread across that line) is small against the first
        singular = np.linalg.svd(np.vstack([points, [[0.0, 0.0]]]), compute_uv=False)
        assert singular[1] < 0.25 * singular[0]


@pytest.mark.bad_input
def test_an_unknown_part_style_is_refused():
    with pytest.raises(ValueError, match="invalid part_style"):
        SyntheticSpec(part_style="blob")
