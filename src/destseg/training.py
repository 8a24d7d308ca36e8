"""The training loop shared by the classifier, AffinityNet and the segmenter.

Resumable and reproducible at epoch granularity: every epoch shuffles with a generator seeded
with ``(seed, epoch)``, every image draws its augmentation from one seeded with ``(seed, epoch,
index)``, and a checkpoint is written (atomically) after every epoch, so a run killed in
epoch 7 and resumed gives the same weights as a run that was never interrupted.

The same loop runs in several processes under torchrun (DistributedDataParallel): each process
takes ``batch_size / processes`` images of every batch, split again into ``accumulate``
micro-batches whose gradients add up before the step. Because an image's augmentation depends
only on ``(seed, epoch, index)``, a step sees the same images, augmented the same way, whatever
the number of processes and micro-batches; with batch statistics fixed or synchronised, one
process and N give the same weights up to float rounding.
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import PolynomialLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from destseg import torch_io
from destseg.device import Precision, to_device
from destseg.distributed import World

OPTIMIZERS = ("sgd", "adamw")
# What a resume checkpoint holds; a file without all of them is not resumed. (It also holds the
# gradient scaler's state, absent from checkpoints written before mixed precision existed.)
CHECKPOINT_KEYS = ("fingerprint", "history", "model", "optimizer", "scheduler")


class CheckpointWarning(UserWarning):
    """A resume checkpoint could not be used; training starts over."""


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


def progress_bar(show: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
    )


@dataclass
class Schedule:
    """How long and how fast to train."""

    epochs: int
    batch_size: int
    seed: int
    poly_power: float = 0.9
    workers: int = 0
    accumulate: int = 1  # micro-batches per step (gradient accumulation)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and of the model's own draws (dropout), inside
    torch's 64-bit seed range for any training seed."""
    return (seed * 10_007 + epoch) % 2**63


def sample_seeds(seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Two independent seeds for image ``index`` in ``epoch``: one for its augmentation, one
    for what the model draws for it (the LDM's shuffle). They depend on nothing else: not on
    the process or loader worker that loads the image, nor on the batch it lands in."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(4, dtype=np.uint64)
    return int(words[0] % 2**63), int(words[1] % 2**63)


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)``, every item's random augmentation drawn from
    its own seed (:func:`sample_seeds`); the item also carries the model's seed for it under
    ``"seed"``. The epoch travels with the index (:class:`EpochSampler`) rather than being
    set on the dataset, so loader workers that live across epochs (persistent workers) draw
    what a fresh loader would."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        augment, model = sample_seeds(self.seed, epoch, index)
        with torch.random.fork_rng(devices=[]):  # the caller's CPU generator is left as it was
            torch.random.default_generator.manual_seed(augment)
            item = self.dataset[index]
        return {**item, "seed": model}


class EpochSampler(Sampler):
    """The indices a ``DistributedSampler`` gives for its current epoch, each paired with that
    epoch: the keys of :class:`SeededSamples`."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.sampler.epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


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


def load_checkpoint(path: Path, fingerprint: str, device: torch.device) -> dict | None:
    """The resume state at ``path`` if it is whole and was written with ``fingerprint``.

    Never fatal: an unreadable file (truncated by a crash, corrupt, or a pickle of arbitrary
    objects, which ``weights_only`` refuses to rebuild) is ignored with a warning naming it, and
    a checkpoint of other params or inputs with a message; training then starts over.
    """
    if not path.is_file():
        return None
    try:
        state = torch_io.load(path, map_location=device)
    except torch_io.UnreadableFileError as err:
        warnings.warn(f"{err}; ignored, training starts over", CheckpointWarning, stacklevel=2)
        return None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        warnings.warn(
            f"{path}: not a resume checkpoint (needs {', '.join(CHECKPOINT_KEYS)}); ignored, "
            "training starts over",
            CheckpointWarning,
            stacklevel=2,
        )
        return None
    if state["fingerprint"] != fingerprint:
        print(f"{path}: written with other params or inputs; training starts over", flush=True)
        return None
    return state


def _resume(model, optimizer, scheduler, scaler, state: dict, path: Path) -> list[dict[str, float]]:
    """Load ``state`` into the four; on a mismatch restore them and return no history."""
    targets = (model, optimizer, scheduler, scaler)
    saved = [copy.deepcopy(x.state_dict()) for x in targets]
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # empty when saved by a disabled (not fp16) scaler
            scaler.load_state_dict(state["scaler"])
        history = [dict(scores) for scores in state["history"]]
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        for target, backup in zip(targets, saved, strict=True):
            if backup:
                target.load_state_dict(backup)
        warnings.warn(
            f"{path}: does not fit this model ({type(err).__name__}); ignored, training starts "
            "over",
            CheckpointWarning,
            stacklevel=2,
        )
        return []
    return history


LossFn = Callable[[nn.Module, dict], torch.Tensor]
Validate = Callable[[nn.Module], dict[str, float]]
EpochLog = Callable[[int, dict[str, float]], None]


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    precision: Precision,
    checkpoint: Path,
    fingerprint: str,
    validate: Validate | None = None,
    log: EpochLog | None = None,
    world: World | None = None,
) -> int:
    """Train ``model`` in place; return the epoch it started from (0 unless it resumed).

    The learning rate decays polynomially per iteration (``PolynomialLR``). After every epoch
    the scores ``train/loss``, ``train/lr`` and ``val/<name>`` (from ``validate``) go to
    ``log(epoch, scores)`` and into the checkpoint's history. ``checkpoint`` is resumed only if
    it was written with the same ``fingerprint`` (a digest of everything that determines the
    result), so a changed parameter never continues a stale run; a resumed run first replays
    the history to ``log``, so the log is whole whatever the interruptions.

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
    steps_per_epoch = len(dataset) // schedule.batch_size  # drop_last
    micro_batch = schedule.batch_size // (world.size * schedule.accumulate)
    scheduler = PolynomialLR(
        optimizer, total_iters=schedule.epochs * steps_per_epoch, power=schedule.poly_power
    )
    device = precision.device
    precision.place(model)  # before loading optimizer state, which follows its parameters
    scaler = precision.scaler()
    history: list[dict[str, float]] = []
    state = load_checkpoint(checkpoint, fingerprint, device)
    if state is not None:
        history = _resume(model, optimizer, scheduler, scaler, state, checkpoint)
    start = len(history)
    if world.main and start >= schedule.epochs:
        print(f"all {schedule.epochs} epochs are in checkpoint {checkpoint}: nothing to train")
    elif world.main and start:
        print(f"resuming from epoch {start + 1} of {schedule.epochs} (checkpoint {checkpoint})")
    for epoch, scores in enumerate(history):
        if log is not None and world.main:
            log(epoch, scores)
    network: nn.Module = model
    if world.size > 1:
        if device.type == "cuda":
            sync_batch_norm(model)
        network = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    samples = SeededSamples(dataset, schedule.seed)
    sampler = DistributedSampler(
        samples,
        num_replicas=world.size,
        rank=world.rank,
        shuffle=True,
        seed=epoch_seed(schedule.seed, 0),  # set_epoch(e) shuffles with epoch_seed(seed, e)
        drop_last=True,
    )
    # One loader for the whole run; on CUDA its workers stay alive across epochs and pin
    # memory for asynchronous copies. On the CPU both only cost memory.
    cuda = device.type == "cuda"
    loader = DataLoader(
        samples,
        batch_size=micro_batch,
        sampler=EpochSampler(sampler),
        drop_last=True,
        num_workers=schedule.workers,
        pin_memory=cuda,
        persistent_workers=cuda and schedule.workers > 0,
    )
    for epoch in range(start, schedule.epochs):
        torch.manual_seed(epoch_seed(schedule.seed, epoch))
        sampler.set_epoch(epoch)
        batches = iter(loader)
        network.train()
        total, count = 0.0, 0
        with progress_bar(world.main) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{schedule.epochs}", total=steps_per_epoch)
            for _ in range(steps_per_epoch):
                optimizer.zero_grad(set_to_none=True)
                for part in range(schedule.accumulate):
                    batch = next(batches)
                    # gradients are averaged across processes on the last micro-batch only
                    last = part == schedule.accumulate - 1
                    sync = nullcontext() if last or world.size == 1 else network.no_sync()
                    with sync:
                        with precision.autocast():
                            loss = loss_fn(network, to_device(batch, device))
                        if not torch.isfinite(loss):
                            raise FloatingPointError(
                                f"loss became {loss.item()} in epoch {epoch + 1}; lower the "
                                "learning rate"
                                + (
                                    ""
                                    if precision.dtype is None
                                    else f" or set amp off ({precision.name})"
                                )
                            )
                        scaler.scale(loss / schedule.accumulate).backward()
                    total += loss.item() * len(batch["id"])
                    count += len(batch["id"])
                scaler.step(optimizer)  # skipped when fp16 gradients overflowed
                scaler.update()
                scheduler.step()
                progress.advance(task)
        total, count = world.sum(np.array([total, count], dtype=np.float64)).tolist()
        scores = {"train/loss": total / count, "train/lr": scheduler.get_last_lr()[0]}
        if world.main:
            if validate is not None:
                with precision.autocast():
                    scores |= {f"val/{name}": value for name, value in validate(model).items()}
            torch_io.save(
                {
                    "fingerprint": fingerprint,
                    "history": [*history, scores],
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                },
                checkpoint,
            )
            if log is not None:
                log(epoch, scores)
        history.append(scores)
        world.barrier()  # no process starts the next epoch before the checkpoint is whole
    return start
