"""Training in several processes (DistributedDataParallel over gloo, on the CPU) against one
process with the same global batch, micro-batches (gradient accumulation), and resume."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from conftest import ROOT, pinned

from destseg.dataset.layout import VOCLayout
from destseg.dataset.torch_dataset import VOCDataset, train_transform
from destseg.models.classifier import Classifier
from destseg.models.freezing import fix_batch_norm
from destseg.models.model_file import build_model
from destseg.runtime.device import Precision
from destseg.runtime.distributed import World, process_group, shared_directory
from destseg.training.loop import Schedule, build_optimizer, fit
from destseg.training.sampling import SeededSamples, sample_seeds

# The classifier with both destruction modules; batch norm on fixed statistics, because on
# the CPU each process would normalise over its own images (torch's SyncBatchNorm runs on
# GPUs only), which is a different computation, not a rounding difference.
CONFIG = {
    "backbone": "resnet10",
    "num_classes": 3,
    "output_stride": 16,
    "ldm": {"grid": 4, "k": 1, "probability": 0.5},
    "mdc": {"grid": 2, "position": 4, "shared": True, "activation": True},
}
EPOCHS, BATCH = 2, 4
# DDP averages per-process gradients ((g1 + g2) / 2 instead of the mean over all images) and
# convolutions run on half batches: the same sums in another order, so equal up to float32
# rounding after EPOCHS x 3 SGD steps.
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def _loss(model, batch, _progress=0.0):
    logits = model(batch["image"], seeds=batch["seed"])
    return torch.nn.functional.multilabel_soft_margin_loss(logits, batch["target"])


class Killed(Exception):
    """Raised by every process at the same step, as a kill of the whole run would stop it."""


def _train(root: Path, checkpoint: Path, world: World, accumulate: int, stop_at: int | None):
    torch.manual_seed(0)
    model = build_model(Classifier, CONFIG)
    fix_batch_norm(model)
    layout = VOCLayout(root)
    dataset = VOCDataset(layout, layout.ids("train"), train_transform(48, (0.7, 1.3), 0.2))
    optimizer = build_optimizer("sgd", model.param_groups(0.05, 10, 1e-4))
    steps = [0]

    def loss(network, batch, progress):
        steps[0] += 1
        if steps[0] == stop_at:
            raise Killed
        return _loss(network, batch, progress)

    schedule = Schedule(EPOCHS, BATCH, seed=3, accumulate=accumulate)
    cpu = Precision(torch.device("cpu"))
    fit(
        model,
        dataset,
        loss,
        optimizer=optimizer,
        schedule=schedule,
        precision=cpu,
        checkpoint=checkpoint,
        fingerprint="same",
        world=world,
    )
    return model


def _worker(rank: int, size: int, port: int, root: Path, checkpoint: Path, out: Path, stop_at):
    """One of ``size`` processes, with the environment torchrun would give it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(size),
        LOCAL_RANK=str(rank),
        TORCHELASTIC_RUN_ID="test",
    )
    torch.set_num_threads(1)
    with process_group(torch.device("cpu")) as world:
        try:
            model = _train(root, checkpoint, world, 1, stop_at)
        except Killed:
            return
        if world.main:
            torch.save(model.state_dict(), out)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(root: Path, checkpoint: Path, out: Path, stop_at=None) -> dict | None:
    args = (2, _free_port(), root, checkpoint, out, stop_at)
    mp.start_processes(_worker, args=args, nprocs=2, start_method="spawn")
    return torch.load(out, weights_only=True) if out.exists() else None


def _assert_same_weights(a: dict, b: dict, **tolerance) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name, **tolerance)


@pytest.fixture(scope="module")
def one_process(tiny_layout, tmp_path_factory) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes runs
    try:
        model = _train(tiny_layout.root, tmp_path_factory.mktemp("one") / "ck.pt", World(), 1, None)
    finally:
        torch.set_num_threads(threads)
    return model.state_dict()


@pytest.fixture(scope="module")
def two_processes(tiny_layout, tmp_path_factory) -> dict:
    """The same training in two processes, uninterrupted (two tests compare with it)."""
    folder = tmp_path_factory.mktemp("two")
    return _two_processes(tiny_layout.root, folder / "ck.pt", folder / "two.pt")


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(
    one_process, two_processes
):
    _assert_same_weights(one_process, two_processes, **TOLERANCE)
    # and training did move them: the comparison is not of two untouched initialisations
    torch.manual_seed(0)
    untrained = build_model(Classifier, CONFIG).state_dict()
    moved = max((one_process[k] - untrained[k]).abs().max().item() for k in untrained)
    assert moved > 100 * TOLERANCE["atol"]


def test_micro_batches_add_up_to_the_whole_batch(tiny_layout, tmp_path, one_process):
    model = _train(tiny_layout.root, tmp_path / "ck.pt", World(), 2, None)
    _assert_same_weights(one_process, model.state_dict(), **TOLERANCE)


def test_two_processes_resume_after_a_kill(tiny_layout, tmp_path, two_processes):
    checkpoint = tmp_path / "b.pt"
    # killed in the middle of epoch 2 (3 steps per epoch): epoch 1 is in the checkpoint
    killed = _two_processes(tiny_layout.root, checkpoint, tmp_path / "killed.pt", stop_at=5)
    assert killed is None
    assert len(torch.load(checkpoint, weights_only=True)["history"]) == 1
    resumed = _two_processes(tiny_layout.root, checkpoint, tmp_path / "resumed.pt")
    _assert_same_weights(two_processes, resumed, atol=0, rtol=0)


def test_a_batch_that_does_not_split_evenly_is_refused(tiny_layout, tmp_path):
    with pytest.raises(ValueError, match="does not split into 3 processes x 1 micro-batches"):
        _train(tiny_layout.root, tmp_path / "ck.pt", World(size=3), 1, None)


def test_an_image_is_augmented_alike_in_any_process_and_batch(tiny_layout):
    dataset = VOCDataset(
        tiny_layout, tiny_layout.ids("train"), train_transform(48, (0.7, 1.3), 0.2)
    )
    samples = SeededSamples(dataset, seed=3)
    first = samples[1, 5]
    torch.rand(10)  # whatever else used torch's generator in between
    again = samples[1, 5]
    torch.testing.assert_close(first["image"], again["image"])
    assert first["seed"] == again["seed"] == sample_seeds(3, 1, 5)[1]
    assert not torch.equal(samples[2, 5]["image"], first["image"])  # a new epoch, new draws
    # the global generator goes on as if no item had been loaded
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    samples[0, 0]
    torch.testing.assert_close(torch.rand(3), expected)


def test_sample_seeds_differ_between_images_epochs_seeds_and_uses():
    seeds = {sample_seeds(s, e, i) for s in range(3) for e in range(3) for i in range(20)}
    assert len(seeds) == 3 * 3 * 20
    assert all(a != b for a, b in seeds)
    assert all(0 <= a < 2**63 and 0 <= b < 2**63 for a, b in seeds)


def test_a_world_shards_interleaved_and_covers_every_item_once():
    items = list(range(11))
    shards = [World(rank=r, size=3).shard(items) for r in range(3)]
    assert shards[0] == [0, 3, 6, 9] and shards[2] == [2, 5, 8]
    assert sorted(item for shard in shards for item in shard) == items
    assert World().shard(items) == items


def test_rows_computed_per_shard_go_back_to_the_items_order(monkeypatch):
    items = list(range(11))
    rows = {r: np.array([[i, -i] for i in World(rank=r, size=3).shard(items)]) for r in range(3)}
    # the sum over the processes, as all_reduce gives it, of what each placed
    placed = []
    monkeypatch.setattr(World, "sum", lambda self, array: placed.append(array) or array)
    for rank in range(3):
        World(rank=rank, size=3).unshard(rows[rank], len(items))
    np.testing.assert_array_equal(sum(placed), np.array([[i, -i] for i in items]))
    np.testing.assert_array_equal(World().unshard(rows[0][:0], 0), np.zeros((0, 2)))


def test_one_world_sums_nothing_and_writes_its_folder(tmp_path):
    world = World()
    counts = np.arange(4)
    assert world.sum(counts) is counts
    with shared_directory(tmp_path / "out", world, "t") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "out" / "a.txt").read_text() == "a"


def test_persistent_loader_workers_draw_what_a_fresh_loader_draws(tiny_layout):
    from torch.utils.data import DataLoader, DistributedSampler

    from destseg.training.sampling import EpochSampler

    dataset = VOCDataset(
        tiny_layout, tiny_layout.ids("train"), train_transform(48, (0.7, 1.3), 0.2)
    )
    samples = SeededSamples(dataset, seed=3)

    def epochs(**loader_options) -> list[torch.Tensor]:
        sampler = DistributedSampler(samples, num_replicas=1, rank=0, seed=5)
        loader = DataLoader(samples, batch_size=4, sampler=EpochSampler(sampler), **loader_options)
        images = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            images += [batch["image"] for batch in loader]
        return images

    persistent = epochs(num_workers=1, persistent_workers=True)
    fresh = epochs(num_workers=0)
    assert len(persistent) == len(fresh) == 6
    for a, b in zip(persistent, fresh, strict=True):
        torch.testing.assert_close(a, b)


def test_only_learning_batch_norms_are_synchronised_and_keep_their_parameters():
    from destseg.models.freezing import FixedBatchNorm2d
    from destseg.training.loop import sync_batch_norm

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.ReLU()),
    )
    fix_batch_norm(model[2])
    weight, mean = model[1].weight, model[1].running_mean
    sync_batch_norm(model)
    assert type(model[1]) is torch.nn.SyncBatchNorm
    assert type(model[2][0]) is FixedBatchNorm2d  # frozen statistics stay frozen
    # the same tensors: an optimizer built before the conversion still steps them
    assert model[1].weight is weight and model[1].running_mean is mean


def test_each_process_takes_the_gpu_of_its_local_rank():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert World(rank=3, size=4, local_rank=1).local_device(cuda) == torch.device("cuda", 1)
    assert World(rank=3, size=4, local_rank=1).local_device(torch.device("cuda:0")).index == 1
    assert World(rank=3, size=4, local_rank=1).local_device(cpu) == cpu
    assert World().local_device(torch.device("cuda:2")) == torch.device("cuda:2")


def test_processes_share_the_cores_out():
    import os

    from destseg.runtime.distributed import cpu_threads

    cores = len(os.sched_getaffinity(0))
    assert cpu_threads(1) == cores
    assert all(cpu_threads(n) >= 1 and n * cpu_threads(n) <= max(cores, n) for n in (2, 3, 64))


def test_cpu_workers_are_shared_out_over_the_processes():
    from destseg.runtime.distributed import World

    for count, size in [(16, 8), (2, 1), (5, 2), (2, 4)]:
        shares = [World(rank=r, size=size).share(count) for r in range(size)]
        assert min(shares) >= 1 and max(shares) - min(shares) <= 1
        assert sum(shares) == max(count, size)


def test_one_process_on_cuda_n_makes_n_the_current_device(monkeypatch):
    import torch

    from destseg.runtime import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for name in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with distributed.process_group(torch.device("cuda", 1)) as world:
        assert world.size == 1
    with distributed.process_group(torch.device("cpu")):
        pass
    assert chosen == [torch.device("cuda", 1)]


def test_validation_runs_on_the_models_device():
    import torch

    from destseg.runtime.device import model_device

    model = torch.nn.Linear(2, 2).to("meta")
    assert model_device(model) == torch.device("meta")


@pytest.mark.bad_input
def test_torchruns_variables_left_in_a_shell_are_named_in_one_line(tmp_path, tiny_layout):
    """RANK, WORLD_SIZE and LOCAL_RANK exported by hand: refused at once, naming them, instead
    of a wait for processes that never come."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(pinned(yaml.safe_load((ROOT / "params.yaml").read_text()))))
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    env.pop("TORCHELASTIC_RUN_ID", None)
    result = subprocess.run(
        [sys.executable, "-m", "stages.train_cls", "--params", str(params),
         "--dataset", str(tiny_layout.root), "--out", str(tmp_path / "m.pt")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: RANK='0', WORLD_SIZE='2', LOCAL_RANK='0' in the environment, yet torchrun did "
        "not start this process (no TORCHELASTIC_RUN_ID): unset them (a shell's leftover) or "
        "start the stage with torchrun"
    ]
