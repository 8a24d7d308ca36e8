import pytest
import torch

from destseg.models.destruction import (
    PatchConv,
    destruct_batch,
    neighbourhood_permutation,
)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_permutation_moves_every_element_fewer_than_2k_places(k):
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        order = neighbourhood_permutation(9, k, generator)
        assert sorted(order.tolist()) == list(range(9))
        position = torch.empty(9, dtype=torch.long)
        position[order] = torch.arange(9)
        assert (position - torch.arange(9)).abs().max() < 2 * k


def test_permutation_with_k_zero_is_the_identity():
    assert neighbourhood_permutation(7, 0).tolist() == list(range(7))


def region_confusion(image: torch.Tensor, grid: int, k: int, generator: torch.Generator):
    """The LDM on one image, always applied: a batch of one through :func:`destruct_batch`."""
    return destruct_batch(image[None], grid, k, 1.0, generator)[0]


def _cell_id_image(size: int, grid: int) -> torch.Tensor:
    """Channel 0 holds the cell row, channel 1 the cell column, channel 2 a unique pixel id."""
    cell = size // grid
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([yy // cell, xx // cell, yy * size + xx]).float()


@pytest.mark.parametrize("k", [1, 2])
def test_cells_move_as_whole_cells_within_the_neighbourhood(k):
    grid, size = 7, 56
    image = _cell_id_image(size, grid)
    generator = torch.Generator().manual_seed(1)
    moved = False
    for _ in range(20):
        out = region_confusion(image, grid, k, generator)
        for a in range(grid):
            for b in range(grid):
                cell = out[:, a * 8 : (a + 1) * 8, b * 8 : (b + 1) * 8]
                r, c = cell[0, 0, 0].item(), cell[1, 0, 0].item()
                assert (cell[0] == r).all() and (cell[1] == c).all(), "cells stay whole"
                assert abs(r - a) < 2 * k and abs(c - b) < 2 * k
                moved |= (r, c) != (a, b)
    assert moved


@pytest.mark.parametrize(("height", "width"), [(512, 512), (375, 500)])
def test_cells_stay_whole_when_the_grid_does_not_divide_the_image(height, width):
    """The paper's grid 7 on a 512 px crop (73 px cells, 1 px left over) and on a VOC image:
    every output cell is one input cell, whole; the leftover strip stays where it was."""
    grid = 7
    ids = torch.arange(height * width, dtype=torch.float32).reshape(1, height, width)
    out = region_confusion(ids, grid, 2, torch.Generator().manual_seed(3))[0]
    ch, cw = height // grid, width // grid
    cells = {
        tuple(ids[0, r * ch : (r + 1) * ch, c * cw : (c + 1) * cw].flatten().tolist()): (r, c)
        for r in range(grid)
        for c in range(grid)
    }
    found = set()
    for a in range(grid):
        for b in range(grid):
            block = out[a * ch : (a + 1) * ch, b * cw : (b + 1) * cw].flatten().tolist()
            assert tuple(block) in cells, f"output cell {(a, b)} is not a whole input cell"
            found.add(cells[tuple(block)])
    assert len(found) == grid * grid and found != {(a, a) for a in range(grid)}
    assert torch.equal(out[grid * ch :], ids[0, grid * ch :])
    assert torch.equal(out[:, grid * cw :], ids[0, :, grid * cw :])


@pytest.mark.parametrize(("height", "width", "grid"), [(50, 61, 7), (13, 9, 4), (64, 64, 7)])
def test_destruction_is_a_permutation_of_the_pixels(height, width, grid):
    image = torch.arange(3 * height * width, dtype=torch.float32).reshape(3, height, width)
    out = region_confusion(image, grid, 2, torch.Generator().manual_seed(2))
    assert out.shape == image.shape
    assert torch.equal(out.flatten().sort().values, image.flatten().sort().values)
    # a pixel keeps its three channels together
    assert torch.equal(out[1] - out[0], torch.full((height, width), height * width * 1.0))


def _two_passes(image: torch.Tensor, grid: int, k: int, generator: torch.Generator):
    """DCL's region confusion written out as its two passes of slice copies, band by band:
    the reference the one-gather LDM must equal pixel for pixel (same draws, same order)."""
    _, height, width = image.shape
    cell_h, cell_w = height // grid, width // grid
    rows = [i * cell_h for i in range(grid + 1)]
    cols = [i * cell_w for i in range(grid + 1)]

    def segments(bounds, order):
        return torch.cat([torch.arange(bounds[c], bounds[c + 1]) for c in order.tolist()])

    out = image.clone()
    for r in range(grid):
        index = segments(cols, neighbourhood_permutation(grid, k, generator))
        out[:, rows[r] : rows[r + 1], : cols[-1]] = image[:, rows[r] : rows[r + 1]][:, :, index]
    result = out.clone()
    for c in range(grid):
        index = segments(rows, neighbourhood_permutation(grid, k, generator))
        result[:, : rows[-1], cols[c] : cols[c + 1]] = out[:, index, cols[c] : cols[c + 1]]
    return result


@pytest.mark.parametrize(
    ("height", "width", "grid", "k"),
    [(512, 512, 7, 2), (375, 500, 7, 1), (13, 9, 4, 3), (64, 64, 1, 2), (30, 45, 3, 0)],
)
def test_the_one_gather_ldm_equals_the_two_passes_of_slice_copies(height, width, grid, k):
    image = torch.randn(3, height, width)
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        torch.rand(1, generator=generator)  # the draw that chose the image
        expected = _two_passes(image, grid, k, generator)
        out = region_confusion(image, grid, k, torch.Generator().manual_seed(seed))
        assert torch.equal(out, expected)


def test_a_seeded_batch_shuffles_each_chosen_image_as_its_own_seed_says():
    images = torch.randn(6, 3, 40, 52)
    seeds = torch.tensor([11, 12, 13, 14, 15, 16])
    out = destruct_batch(images, 4, 2, 0.5, seeds=seeds)
    kept = 0
    for image, shuffled, seed in zip(images, out, seeds.tolist(), strict=True):
        generator = torch.Generator().manual_seed(seed)
        if torch.rand(1, generator=generator).item() < 0.5:
            assert torch.equal(shuffled, _two_passes(image, 4, 2, generator))
        else:
            kept += 1
            assert torch.equal(shuffled, image)
    assert 0 < kept < len(images)  # both branches ran
    assert torch.equal(destruct_batch(images[2:4], 4, 2, 0.5, seeds=seeds[2:4]), out[2:4])


@pytest.mark.bad_input
def test_a_grid_finer_than_the_image_is_refused():
    with pytest.raises(ValueError, match="a 5x40 image cannot be cut into 7\\^2 cells"):
        destruct_batch(torch.zeros(2, 3, 5, 40), 7, 2, 1.0)


def test_probability_zero_is_the_identity_and_seeded_runs_repeat():
    images = torch.randn(4, 3, 28, 28)
    assert torch.equal(destruct_batch(images, 7, 2, 0.0), images)
    a = destruct_batch(images, 7, 2, 1.0, torch.Generator().manual_seed(5))
    b = destruct_batch(images, 7, 2, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, images)


@pytest.mark.parametrize("shared", [True, False])
def test_patch_conv_keeps_information_inside_its_patch(shared):
    torch.manual_seed(0)
    module = PatchConv(4, grid=2, shared=shared).eval()
    x = torch.randn(1, 4, 8, 10)
    changed = x.clone()
    changed[:, :, 1:3, 6:9] += 5.0  # inside the top-right patch (rows 0-3, cols 5-9)
    with torch.no_grad():
        diff = (module(changed) - module(x)).abs().sum(1)[0]
    assert diff[:4, 5:].sum() > 0
    diff[:4, 5:] = 0
    assert diff.sum() == 0


def test_patch_conv_at_a_patch_border_sees_zeros_not_the_neighbour():
    module = PatchConv(1, grid=2, activation=False).eval()
    with torch.no_grad():
        module.convs[0].weight.fill_(1.0)
        module.norm.running_var.fill_(1.0 - module.norm.eps)
        x = torch.ones(1, 1, 4, 4)
        out = module(x)[0, 0]
    # every pixel of a 2x2 patch has 4 in-patch neighbours (itself included) under a 3x3 window
    assert torch.allclose(out, torch.full((4, 4), 4.0))


def test_per_patch_convolutions_are_distinct_modules():
    assert len(PatchConv(2, grid=3, shared=False).convs) == 9
    assert len(PatchConv(2, grid=3, shared=True).convs) == 1
