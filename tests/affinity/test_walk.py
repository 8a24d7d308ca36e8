"""Pixel pairs (offsets, labels, affinities, loss), the transition matrix and the random walk."""

import numpy as np
import pytest
import torch

from destseg.affinity.pairs import affinity_loss, pair_labels
from destseg.affinity.walk import propagate_cam, random_walk, transition_matrix
from destseg.models.affinity_net import neighbour_offsets, pair_affinity, shifted


def test_offsets_cover_each_unordered_pair_once_within_the_radius():
    offsets = neighbour_offsets(2)
    assert sorted(offsets) == [(0, 1), (1, -1), (1, 0), (1, 1)]  # 1 + 2 = 3 < 4 keeps diagonals
    for radius in (3, 5):
        offsets = neighbour_offsets(radius)
        span = range(-radius, radius + 1)
        everything = {(dy, dx) for dy in span for dx in span if 0 < dy * dy + dx * dx < radius**2}
        assert set(offsets) | {(-dy, -dx) for dy, dx in offsets} == everything
        assert len(offsets) * 2 == len(everything)
    with pytest.raises(ValueError, match="radius"):
        neighbour_offsets(1)


def test_pair_labels_of_a_hand_made_map():
    label = torch.tensor([[0, 0, 1], [2, 255, 1]])
    labels = {k: v.numpy() for k, v in pair_labels(label, radius=2).items()}
    offsets = neighbour_offsets(2)

    def pairs(kind):
        found = set()
        for p, y, x in zip(*np.nonzero(labels[kind]), strict=True):
            dy, dx = offsets[p]
            found.add(((int(y), int(x)), (int(y + dy), int(x + dx))))
        return found

    assert pairs("bg") == {((0, 0), (0, 1))}
    assert pairs("fg") == {((0, 2), (1, 2))}
    # every other pair without the ignored pixel (1, 1) joins two different classes
    assert pairs("neg") == {
        ((0, 1), (0, 2)), ((0, 0), (1, 0)), ((0, 1), (1, 0)), ((0, 1), (1, 2)),
    }  # fmt: skip
    # no pair is in two sets, and the pairs with (1, 1) or leaving the image are in none
    total = labels["bg"].astype(int) + labels["fg"] + labels["neg"]
    assert total.max() == 1 and total.sum() == 6


def test_pairs_beyond_the_radius_are_not_labelled():
    label = torch.zeros((1, 6), dtype=torch.long)
    label[0, 5] = 1
    labels = pair_labels(label, radius=3)  # horizontal offsets 1 and 2 only
    assert labels["neg"].sum() == 2  # (0,3)-(0,5) and (0,4)-(0,5); (0,2)-(0,5) is too far


def _two_regions(height=6, width=8, across=0.0):
    """Affinity 1 inside the left and the right half, ``across`` between them."""
    radius = 3
    region = np.zeros((height, width), dtype=np.uint8)
    region[:, width // 2 :] = 1
    labels = pair_labels(torch.from_numpy(region), radius)
    affinity = torch.where(labels["neg"], across, 1.0)
    return region, transition_matrix(affinity, radius, beta=1.0), affinity


def test_transition_matrix_is_row_stochastic_and_nonnegative():
    torch.manual_seed(0)
    radius = 4
    affinity = torch.rand(len(neighbour_offsets(radius)), 7, 9)
    matrix = transition_matrix(affinity, radius, beta=8.0).to_dense()
    assert matrix.shape == (63, 63)
    assert torch.allclose(matrix.sum(1), torch.ones(63))
    assert (matrix >= 0).all()
    # symmetric weights: nonzero in both directions
    assert torch.equal(matrix > 0, (matrix > 0).T)


def test_transition_matrix_of_every_grid_equals_one_written_pair_by_pair():
    """Two images of one grid size (the second reuses the cached index structure) and one of
    another: each matrix is the pairs' affinity ** beta in both directions plus self-loops,
    rows normalised, entry for entry."""
    from destseg.affinity.walk import _pair_structure

    _pair_structure.cache_clear()
    torch.manual_seed(1)
    radius, beta = 3, 4.0
    offsets = neighbour_offsets(radius)
    for height, width in [(5, 6), (5, 6), (6, 4)]:
        affinity = torch.rand(len(offsets), height, width)
        expected = torch.eye(height * width, dtype=torch.float64)
        for p, (dy, dx) in enumerate(offsets):
            for y in range(height):
                for x in range(width):
                    if 0 <= y + dy < height and 0 <= x + dx < width:
                        a, b = y * width + x, (y + dy) * width + x + dx
                        expected[a, b] = expected[b, a] = float(affinity[p, y, x]) ** beta
        expected /= expected.sum(1, keepdim=True)
        matrix = transition_matrix(affinity, radius, beta).to_dense().double()
        torch.testing.assert_close(matrix, expected, rtol=1e-5, atol=1e-7)
    assert _pair_structure.cache_info().hits == 1


def test_transition_matrix_checks_the_offsets():
    with pytest.raises(ValueError, match="offsets"):
        transition_matrix(torch.ones(3, 4, 4), radius=3, beta=1.0)


def test_a_constant_region_stays_constant():
    region, matrix, _ = _two_regions()
    cam = torch.from_numpy(np.where(region == 0, 0.7, 0.2)).float()[None]
    walked = random_walk(cam, matrix, steps=256)
    assert torch.allclose(walked, cam, atol=1e-5)


def test_a_seed_spreads_inside_its_region_but_not_across_a_boundary():
    region, matrix, _ = _two_regions(across=0.0)
    cam = torch.zeros(1, *region.shape)
    cam[0, 2, 1] = 1.0  # one seed pixel in the left region
    walked = random_walk(cam, matrix, steps=256)[0].numpy()
    left, right = walked[region == 0], walked[region == 1]
    # spread evenly over the whole region (a walk converges to a weighted mean of the seed)
    assert left.min() > 0 and left.max() - left.min() < 0.05 * left.mean()
    assert np.abs(right).max() == 0
    # a weak boundary lets a little through, far less than stays inside
    region, leaky, _ = _two_regions(across=0.3)
    walked = random_walk(cam, leaky, steps=8)[0].numpy()
    assert 0 < walked[region == 1].mean() < 0.5 * walked[region == 0].mean()


def test_shifted_moves_content_and_fills_what_leaves():
    x = torch.arange(12.0).reshape(3, 4)
    out = shifted(x, 1, -1, fill=-1.0)
    assert out[0, 1] == x[1, 0] and out[1, 3] == x[2, 2]
    assert (out[2] == -1).all() and (out[:, 0] == -1).all()
    assert (shifted(x, 3, 0, fill=7.0) == 7).all()  # further than the map: all fill


def test_batched_pair_labels_match_one_map_at_a_time():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 5, 6))
    labels[0, 2, 2] = 255
    batched = pair_labels(labels, radius=3)
    for i in range(2):
        single = pair_labels(labels[i], radius=3)
        for kind in ("bg", "fg", "neg"):
            assert torch.equal(batched[kind][i], single[kind])


def test_pair_affinity_is_one_for_equal_features_and_falls_with_the_difference():
    features = torch.zeros(1, 2, 3, 4)
    features[0, :, :, 2:] = torch.tensor([0.0, 2.0])[:, None, None]  # right half differs by 1
    affinity = pair_affinity(features, radius=2)
    offsets = neighbour_offsets(2)
    right = offsets.index((0, 1))
    assert affinity.shape == (1, len(offsets), 3, 4)
    assert affinity[0, right, 0, 0] == 1  # (0,0)-(0,1): same features
    assert torch.isclose(affinity[0, right, 0, 1], torch.exp(torch.tensor(-1.0)))  # mean |d| = 1


def test_affinity_loss_by_hand():
    affinity = torch.tensor([0.5, 0.25, 0.9, 0.2])
    labels = {
        "bg": torch.tensor([True, False, False, False]),
        "fg": torch.tensor([False, True, False, False]),
        "neg": torch.tensor([False, False, True, True]),
    }
    terms = affinity_loss(affinity, labels)
    eps = 1e-5
    assert torch.isclose(terms["bg"], -torch.log(torch.tensor(0.5 + eps)))
    assert torch.isclose(terms["fg"], -torch.log(torch.tensor(0.25 + eps)))
    neg = -(np.log(0.1 + eps) + np.log(0.8 + eps)) / 2
    assert torch.isclose(terms["neg"], torch.tensor(neg, dtype=torch.float32))
    expected = terms["bg"] / 4 + terms["fg"] / 4 + terms["neg"] / 2
    assert torch.isclose(terms["total"], expected)
    none = {k: torch.zeros(4, dtype=torch.bool) for k in labels}
    assert affinity_loss(affinity, none)["total"] == 0  # no pairs of a kind: no term, no NaN


def test_propagation_removes_a_cam_spill_across_a_boundary():
    """A CAM that leaks over the border of its region: the leak is diluted over the region it
    leaked into (a walk averages within a region), so it falls far below the threshold."""
    _, _, affinity = _two_regions(height=8, width=8, across=0.0)
    cam = torch.zeros(1, 16, 16)  # image size: twice the affinity grid
    cam[0, :, :9] = 1.0  # the object is the left half (8 columns); the CAM spills 1 column
    walked = propagate_cam(cam, affinity, radius=3, beta=8.0, exp_times=8, stride=2)
    assert walked.shape == cam.shape and torch.isclose(walked.max(), torch.tensor(1.0), atol=1e-4)
    assert walked[0, :, :6].min() > 0.9  # inside stays on
    # half a grid column of 0.5 spread over the 4 columns of the right region: about 1/8
    assert walked[0, :, 10:].max() < 0.15 and walked[0, :, 8:].max() < 0.5
    assert propagate_cam(torch.zeros(0, 16, 16), affinity, 3, 8.0, 8, 2).shape == (0, 16, 16)


def test_global_normalisation_keeps_a_diluted_class_weak():
    """Two classes in two regions: class 1 fills its region, class 2 is a single hot cell that
    the walk spreads thin over its own region. IRN divides by the global maximum: class 2 stays
    weak (below a 0.25 background) where per-class normalisation would inflate it back to 1."""
    _, _, affinity = _two_regions(height=8, width=8, across=0.0)
    cam = torch.zeros(2, 16, 16)
    cam[0, :, :8] = 1.0
    cam[1, 0:2, 14:16] = 1.0  # one grid cell of the right region (32 cells)
    walked = propagate_cam(cam, affinity, 3, 8.0, 8, stride=2, normalize="global")
    assert torch.isclose(walked[0].max(), torch.tensor(1.0), atol=1e-4)
    assert walked[1].max() < 0.1
    per_class = propagate_cam(cam, affinity, 3, 8.0, 8, stride=2, normalize="per_class")
    assert torch.isclose(per_class[1].max(), torch.tensor(1.0), atol=1e-3)
    torch.testing.assert_close(per_class[0], walked[0])


def test_the_walk_is_brought_back_over_the_pixels_of_its_cells():
    """A 10 x 10 image on a stride-4 grid of 3 x 3 cells (the last ones over 2 pixels): without
    affinities the walk is the identity, so a cell's value comes back over its own pixels."""
    affinity = torch.zeros(len(neighbour_offsets(2)), 3, 3)
    cam = torch.zeros(1, 10, 10)
    cam[0, 8:, 8:] = 1.0  # exactly the last cell
    walked = propagate_cam(cam, affinity, 2, 8.0, 3, stride=4, normalize="per_class")
    assert walked[0, 9, 9] > 0.99 and walked[0, :6, :6].max() == 0
    with pytest.raises(ValueError, match="gives a"):
        propagate_cam(cam, torch.zeros(len(neighbour_offsets(2)), 2, 2), 2, 8.0, 3, stride=4)
