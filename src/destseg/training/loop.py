"""The training loop shared by the classifier, AffinityNet and the segmenter.

Resumable and reproducible at epoch granularity: every epoch shuffles with a generator seeded
with ``(seed, epoch)``, every image draws its augmentation from one seeded with ``(seed, epoch,
index)`` (:mod:`destseg.training.sampling`), and a checkpoint is written (atomically) after
every epoch (:mod:`destseg.training.checkpoint`), so a run killed in epoch 7 and resumed gives
the same weights as a run that was never interrupted.

The same loop runs in several processes under torchrun (DistributedDataParallel): each process
takes ``batch_size / processes`` images of every batch, split again into ``accumulate``
micro-batches whose gradients add up before the step. Because an image's augmentation depends
only on ``(seed, epoch, index)``, a step sees the same images, augmented the same way, whatever
the number of processes and micro-batches; with batch statistics fixed or synchronised, one
process and N give the same weights up to float rounding.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import PolynomialLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from destseg.runtime.device import Precision, to_device
from destseg.runtime.distributed import World
from destseg.runtime.pace import paced
from destseg.training.checkpoint import resume, save_checkpoint
from destseg.training.sampling import EpochSampler, SeededSamples, epoch_seed

OPTIMIZERS = ("sgd", "adamw")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(name: str, param_groups: list[dict], momentum: float = 0.9):
    """SGD with momentum or AdamW over ``param_groups`` (each carrying its lr and weight decay).

    Arguments go by keyword: a helper in the public WSSS code passed weight_decay positionally
    into SGD's momentum slot.
    """
    lr = param_groups[0]["lr"]
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


@dataclass
class Schedule:
    """How long and how fast to train."""

    epochs: int
    batch_size: int
    seed: int
    poly_power: float = 0.9
    workers: int = 0
    accumulate: int = 1  # micro-batches per step (gradient accumulation)


def check_schedule(dataset_size: int, schedule: Schedule, processes: int = 1) -> None:
    """Refuse a schedule that cannot run one step (``drop_last`` needs a whole batch) or whose
    batch does not split evenly into ``processes`` x ``schedule.accumulate`` micro-batches."""
    if dataset_size < schedule.batch_size:
        raise ValueError(
            f"batch size {schedule.batch_size} is larger than the {dataset_size} training images"
        )
    parts = processes * schedule.accumulate
    if schedule.batch_size % parts:
        raise ValueError(
            f"batch size {schedule.batch_size} does not split into {processes} processes x "
            f"{schedule.accumulate} micro-batches (accumulate) of equal size"
        )


def sync_batch_norm(module: nn.Module) -> None:
    """Make every plain ``BatchNorm2d`` inside ``module`` a ``SyncBatchNorm`` (statistics over
    the whole batch of all processes; same parameters, so model files do not change). Frozen
    batch norms (:class:`~destseg.models.freezing.FixedBatchNorm2d`) are left alone, which
    torch's ``convert_sync_batchnorm`` on the whole model would not do."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            sync_batch_norm(child)


# A loss function takes the network, a batch and the training's progress (the share of its steps
# taken before this one, 0 at the first: for weights that ramp up, e.g. Puzzle-CAM's) and
# returns the loss to minimise, or that and named terms to log beside it (detached, each a mean
# over the batch, e.g. each branch's own loss): ``train/<name>`` per epoch.
LossFn = Callable[
    [nn.Module, dict, float], torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]
]
Validate = Callable[[nn.Module], dict[str, float]]
# (epoch, scores, seconds the epoch took; None for an epoch replayed from a checkpoint)
EpochLog = Callable[[int, dict[str, float], float | None], None]




@dataclass
class _Training:
    """What one training run steps: the model (and its DDP wrapper, ``network``, which the
    forward pass goes through), the optimizer, the learning-rate schedule and the gradient
    scaler."""

    model: nn.Module
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: PolynomialLR
    scaler: torch.amp.GradScaler

    def parts(self) -> dict:
        """The stateful parts a checkpoint holds, by their names in it."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    *,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    precision: Precision,
    checkpoint: Path,
    fingerprint: str,
    validate: Validate | None = None,
    validate_every: int = 1,
    log: EpochLog | None = None,
    world: World | None = None,
) -> int:
    """Train ``model`` in place; return the epoch it started from (0 unless it resumed).

    The learning rate decays polynomially per iteration (``PolynomialLR``). After every epoch
    the scores ``train/loss``, ``train/lr`` and ``val/<name>`` (from ``validate``, after every
    ``validate_every``-th epoch and the last) go to ``log(epoch, scores, seconds)`` (the
    epoch's wall time, training, validation and checkpoint together) and into the
    checkpoint's history. ``checkpoint`` is resumed only if
    it was written with the same ``fingerprint``; a resumed run first replays the history to
    ``log`` (``seconds`` None), so the log is whole whatever the interruptions.

    The forward pass and the loss run under ``precision``'s autocast; with fp16 the loss is
    scaled (``GradScaler``, whose state is checkpointed with the rest) so that small gradients
    do not underflow.

    In a ``world`` of several processes (torchrun) the model is wrapped in
    DistributedDataParallel, its batch norms synchronised on GPUs (``SyncBatchNorm``; on the
    CPU torch has none, so each process normalises over its own images), each process loads
    its share of every batch (``DistributedSampler``), and only the main process validates,
    logs and writes the checkpoint; every process resumes from it.
    """
    world = world or World()
    check_schedule(len(dataset), schedule, world.size)
    if validate is not None and validate_every < 1:  # the stages pass no validate for 0 (off)
        raise ValueError(f"validate_every must be 1 or more epochs, not {validate_every}")
    steps_per_epoch = len(dataset) // schedule.batch_size  # drop_last
    scheduler = PolynomialLR(
        optimizer, total_iters=schedule.epochs * steps_per_epoch, power=schedule.poly_power
    )
    precision.place(model)  # before loading optimizer state, which follows its parameters
    run = _Training(model, model, optimizer, scheduler, precision.scaler())
    history = resume(checkpoint, fingerprint, precision.device, run.parts())
    start = len(history)
    if world.main:
        _announce(start, schedule.epochs, checkpoint)
        for epoch, scores in enumerate(history):
            if log is not None:
                log(epoch, scores, None)
    run.network = _distributed(model, world, precision.device)
    sampler, batches = _loader(dataset, schedule, world, precision.device)
    for epoch in range(start, schedule.epochs):
        began = time.perf_counter()
        torch.manual_seed(epoch_seed(schedule.seed, epoch, world.rank))
        sampler.set_epoch(epoch)
        means = train_epoch(
            run, iter(batches), loss_fn, precision, schedule, epoch, steps_per_epoch, world
        )
        scores = {"train/loss": means.pop("loss"), "train/lr": scheduler.get_last_lr()[0]}
        scores |= {f"train/{name}": value for name, value in means.items()}
        if world.main:
            if validate is not None and (
                (epoch + 1) % validate_every == 0 or epoch + 1 == schedule.epochs
            ):
                with precision.autocast():
                    scores |= {f"val/{name}": value for name, value in validate(model).items()}
            save_checkpoint(checkpoint, fingerprint, [*history, scores], run.parts())
            if log is not None:
                log(epoch, scores, time.perf_counter() - began)
        history.append(scores)
        world.barrier()  # no process starts the next epoch before the checkpoint is whole
    return start


def _announce(start: int, epochs: int, checkpoint: Path) -> None:
    if start >= epochs:
        print(f"all {epochs} epochs are in checkpoint {checkpoint}: nothing to train")
    elif start:
        print(f"resuming from epoch {start + 1} of {epochs} (checkpoint {checkpoint})")


def _distributed(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``model`` as the forward pass sees it: itself alone, DistributedDataParallel (with
    synchronised batch norms on GPUs) in a world of several processes."""
    if world.size == 1:
        return model
    if device.type == "cuda":
        sync_batch_norm(model)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _loader(
    dataset: Dataset, schedule: Schedule, world: World, device: torch.device
) -> tuple[DistributedSampler, DataLoader]:
    """The sampler (its epoch set by the caller) and the one loader of the whole run: this
    process's micro-batches of every batch, each image augmented from its own seed. On CUDA
    its workers stay alive across epochs and pin memory for asynchronous copies; on the CPU
    both only cost memory."""
    samples = SeededSamples(dataset, schedule.seed)
    sampler = DistributedSampler(
        samples,
        num_replicas=world.size,
        rank=world.rank,
        shuffle=True,
        seed=epoch_seed(schedule.seed, 0),  # set_epoch(e) shuffles with epoch_seed(seed, e)
        drop_last=True,
    )
    cuda = device.type == "cuda"
    loader = DataLoader(
        samples,
        batch_size=schedule.batch_size // (world.size * schedule.accumulate),
        sampler=EpochSampler(sampler),
        drop_last=True,
        num_workers=schedule.workers,
        pin_memory=cuda,
        persistent_workers=cuda and schedule.workers > 0,
    )
    return sampler, loader


def train_epoch(
    run: _Training,
    batches: Iterator[dict],
    loss_fn: LossFn,
    precision: Precision,
    schedule: Schedule,
    epoch: int,
    steps: int,
    world: World,
) -> dict[str, float]:
    """``steps`` optimizer steps, each over ``schedule.accumulate`` micro-batches of
    ``batches``; return the mean loss per image over every process (``loss``), and likewise
    each term the loss function reports."""
    run.network.train()
    totals: dict[str, torch.Tensor] = {}  # on the device: read once per epoch, not per step
    count = 0
    description = f"epoch {epoch + 1}/{schedule.epochs}"
    for step in paced(range(steps), steps, description, quiet=not world.main, unit="steps"):
        done = (epoch * steps + step) / (schedule.epochs * steps)  # before this step
        run.optimizer.zero_grad(set_to_none=True)
        for part in range(schedule.accumulate):
            batch = next(batches)
            # gradients are averaged across processes on the last micro-batch only
            last = part == schedule.accumulate - 1
            with nullcontext() if last or world.size == 1 else run.network.no_sync():
                loss, terms = _loss(run.network, batch, loss_fn, precision, epoch, done)
                run.scaler.scale(loss / schedule.accumulate).backward()
            for name, value in {"loss": loss, **terms}.items():
                weighted = value.detach().double() * len(batch["id"])
                totals[name] = totals[name] + weighted if name in totals else weighted
            count += len(batch["id"])
        run.scaler.step(run.optimizer)  # skipped when fp16 gradients overflowed
        run.scaler.update()
        run.scheduler.step()
    sums = [value.item() for value in totals.values()]
    *sums, count = world.sum(np.array([*sums, count], dtype=np.float64)).tolist()
    return {name: value / count for name, value in zip(totals, sums, strict=True)}


def _loss(
    network: nn.Module,
    batch: dict,
    loss_fn: LossFn,
    precision: Precision,
    epoch: int,
    progress: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch under ``precision``'s autocast, and the terms the loss
    function reports; a loss that is not finite stops training with the advice that fits."""
    with precision.autocast():
        loss = loss_fn(network, to_device(batch, precision.device), progress)
    loss, terms = loss if isinstance(loss, tuple) else (loss, {})
    if not torch.isfinite(loss):
        advice = "" if precision.dtype is None else f" or set amp off ({precision.name})"
        raise FloatingPointError(
            f"loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate{advice}"
        )
    return loss, terms
