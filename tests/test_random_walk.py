"""Affinity labels of pixel pairs, the transition matrix and the random walk."""

import numpy as np
import pytest
import torch

from destseg.random_walk import (
    neighbour_offsets,
    pair_labels,
    random_walk,
    transition_matrix,
)


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
    label = np.array([[0, 0, 1], [2, 255, 1]], dtype=np.uint8)
    labels = pair_labels(label, radius=2)
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
    label = np.zeros((1, 6), dtype=np.uint8)
    label[0, 5] = 1
    labels = pair_labels(label, radius=3)  # horizontal offsets 1 and 2 only
    assert labels["neg"].sum() == 2  # (0,3)-(0,5) and (0,4)-(0,5); (0,2)-(0,5) is too far


def _two_regions(height=6, width=8, across=0.0):
    """Affinity 1 inside the left and the right half, ``across`` between them."""
    radius = 3
    region = np.zeros((height, width), dtype=np.uint8)
    region[:, width // 2 :] = 1
    labels = pair_labels(region, radius)
    affinity = torch.from_numpy(np.where(labels["neg"], across, 1.0)).float()
    return region, transition_matrix(affinity, radius, beta=1.0)


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


def test_transition_matrix_checks_the_offsets():
    with pytest.raises(ValueError, match="offsets"):
        transition_matrix(torch.ones(3, 4, 4), radius=3, beta=1.0)


def test_a_constant_region_stays_constant():
    region, matrix = _two_regions()
    cam = torch.from_numpy(np.where(region == 0, 0.7, 0.2)).float()[None]
    walked = random_walk(cam, matrix, steps=256)
    assert torch.allclose(walked, cam, atol=1e-5)


def test_a_seed_spreads_inside_its_region_but_not_across_a_boundary():
    region, matrix = _two_regions(across=0.0)
    cam = torch.zeros(1, *region.shape)
    cam[0, 2, 1] = 1.0  # one seed pixel in the left region
    walked = random_walk(cam, matrix, steps=256)[0].numpy()
    left, right = walked[region == 0], walked[region == 1]
    # spread evenly over the whole region (a walk converges to a weighted mean of the seed)
    assert left.min() > 0 and left.max() - left.min() < 0.05 * left.mean()
    assert np.abs(right).max() == 0
    # a weak boundary lets a little through, far less than stays inside
    region, leaky = _two_regions(across=0.3)
    walked = random_walk(cam, leaky, steps=8)[0].numpy()
    assert 0 < walked[region == 1].mean() < 0.5 * walked[region == 0].mean()
