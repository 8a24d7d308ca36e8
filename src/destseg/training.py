"""The training loop shared by the classifier and the segmenter.

Resumable and reproducible at epoch granularity: every epoch draws its shuffling and its
augmentations from generators seeded with ``(seed, epoch)``, and a checkpoint is written
(atomically) after every epoch, so a run killed in epoch 7 and resumed gives the same weights
as a run that was never interrupted.
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.optim.lr_scheduler import PolynomialLR
from torch.utils.data import DataLoader, Dataset

from destseg import torch_io
from destseg.device import Precision, to_device

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


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


@dataclass
class Schedule:
    """How long and how fast to train."""

    epochs: int
    batch_size: int
    seed: int
    poly_power: float = 0.9
    workers: int = 0


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and augmentation, inside torch's 64-bit seed range
    for any training seed."""
    return (seed * 10_007 + epoch) % 2**63


def check_schedule(dataset_size: int, schedule: Schedule) -> None:
    """Refuse a schedule that cannot run one step (``drop_last`` needs a whole batch)."""
    if dataset_size < schedule.batch_size:
        raise ValueError(
            f"batch size {schedule.batch_size} is larger than the {dataset_size} training images"
        )


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
    """
    check_schedule(len(dataset), schedule)
    steps_per_epoch = len(dataset) // schedule.batch_size  # drop_last
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
    if start >= schedule.epochs:
        print(f"all {schedule.epochs} epochs are in checkpoint {checkpoint}: nothing to train")
    elif start:
        print(f"resuming from epoch {start + 1} of {schedule.epochs} (checkpoint {checkpoint})")
    for epoch, scores in enumerate(history):
        if log is not None:
            log(epoch, scores)
    for epoch in range(start, schedule.epochs):
        torch.manual_seed(epoch_seed(schedule.seed, epoch))
        generator = torch.Generator().manual_seed(epoch_seed(schedule.seed, epoch))
        loader = DataLoader(
            dataset,
            batch_size=schedule.batch_size,
            shuffle=True,
            drop_last=True,
            generator=generator,
            num_workers=schedule.workers,
            pin_memory=device.type == "cuda",
        )
        model.train()
        total, count = 0.0, 0
        with progress_bar() as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{schedule.epochs}", total=len(loader))
            for batch in loader:
                with precision.autocast():
                    loss = loss_fn(model, to_device(batch, device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate"
                        + ("" if precision.dtype is None else f" or set amp off ({precision.name})")
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)  # skipped when fp16 gradients overflowed
                scaler.update()
                scheduler.step()
                total += loss.item() * len(batch["id"])
                count += len(batch["id"])
                progress.advance(task)
        scores = {"train/loss": total / count, "train/lr": scheduler.get_last_lr()[0]}
        if validate is not None:
            with precision.autocast():
                scores |= {f"val/{name}": value for name, value in validate(model).items()}
        history.append(scores)
        torch_io.save(
            {
                "fingerprint": fingerprint,
                "history": history,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
            },
            checkpoint,
        )
        if log is not None:
            log(epoch, scores)
    return start
