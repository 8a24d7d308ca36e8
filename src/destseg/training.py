"""The training loop shared by the classifier and the segmenter.

Resumable and reproducible at epoch granularity: every epoch draws its shuffling and its
augmentations from generators seeded with ``(seed, epoch)``, and a checkpoint is written
(atomically) after every epoch, so a run killed in epoch 7 and resumed gives the same weights
as a run that was never interrupted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.optim.lr_scheduler import PolynomialLR
from torch.utils.data import DataLoader, Dataset

from destseg.device import to_device
from destseg.files import atomic_path

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


LossFn = Callable[[nn.Module, dict], torch.Tensor]
Validate = Callable[[nn.Module], dict[str, float]]
EpochLog = Callable[[int, dict[str, float]], None]


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    device: torch.device,
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
    """
    if len(dataset) < schedule.batch_size:
        raise ValueError(
            f"batch size {schedule.batch_size} is larger than the {len(dataset)} training images"
        )
    steps_per_epoch = len(dataset) // schedule.batch_size  # drop_last
    scheduler = PolynomialLR(
        optimizer, total_iters=schedule.epochs * steps_per_epoch, power=schedule.poly_power
    )
    model.to(device)  # before loading optimizer state, which follows its parameters' device
    history: list[dict[str, float]] = []
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = state["history"]
    start = len(history)
    for epoch, scores in enumerate(history):
        if log is not None:
            log(epoch, scores)
    for epoch in range(start, schedule.epochs):
        torch.manual_seed(schedule.seed * 10_007 + epoch)
        generator = torch.Generator().manual_seed(schedule.seed * 10_007 + epoch)
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
                loss = loss_fn(model, to_device(batch, device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(batch["id"])
                count += len(batch["id"])
                progress.advance(task)
        scores = {"train/loss": total / count, "train/lr": scheduler.get_last_lr()[0]}
        if validate is not None:
            scores |= {f"val/{name}": value for name, value in validate(model).items()}
        history.append(scores)
        with atomic_path(checkpoint) as tmp:
            torch.save(
                {
                    "fingerprint": fingerprint,
                    "history": history,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                },
                tmp,
            )
        if log is not None:
            log(epoch, scores)
    return start
