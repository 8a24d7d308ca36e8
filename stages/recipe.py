"""The training recipe shared by the train_cls, train_aff and train_seg stages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dvclive import Live
from torch import nn

from destseg.dataset.torch_dataset import VOCDataset
from destseg.models.freezing import freeze_backbone
from destseg.models.model_file import Network, build_model, save_model
from destseg.runtime.device import resolve_device, resolve_precision
from destseg.runtime.distributed import process_group
from destseg.runtime.files import mark_output, naming_storage_errors
from destseg.runtime.pace import EpochClock
from destseg.training.checkpoint import fingerprint
from destseg.training.loop import (
    LossFn,
    Schedule,
    Validate,
    build_optimizer,
    check_schedule,
    fit,
    seed_everything,
)
from stages.params.dist import DistParams
from stages.params.run import RunParams
from stages.params.train import TrainParams
from stages.torchrun import run_in_workers


@contextmanager
def _live(live_dir: Path, main: bool) -> Iterator[Live | None]:
    """DVCLive's logger in ``live_dir`` for the process that writes (None in the others). It
    writes its files itself, and its errors name none: a full disk is named by the folder."""
    if not main:
        yield None
        return
    with naming_storage_errors(live_dir):
        logger = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False).__enter__()
    try:
        yield logger
    finally:
        with naming_storage_errors(live_dir):
            logger.__exit__(None, None, None)


def train_and_save(
    network: Network,
    config: dict,
    train_set: VOCDataset,
    loss_fn: LossFn,
    *,
    p: TrainParams,
    run: RunParams,
    dist: DistParams,
    module: str,
    inputs: list[Path],
    out: Path,
    checkpoint: Path,
    live_dir: Path,
    validate: Validate | None = None,
    validate_every: int = 1,
    initialize: Callable[[nn.Module], object] | None = None,
) -> None:
    """The training recipe shared by train_cls, train_aff and train_seg.

    Builds the network and its optimizer from ``p``, trains with resume from ``checkpoint``
    (valid only for the same params, seed, number of processes and ``inputs`` files), logs
    every epoch with DVCLive (``train/loss``, ``train/lr`` and what ``validate`` returns, under
    ``val/``, after every ``validate_every``-th epoch and the last; each also as a curve under
    ``plots/metrics``) and writes the model file with its config and the dataset's class
    names. The checkpoint is scratch, not a DVC output: a clone or a ``dvc exp run --temp``
    copy without it must not look out of date; it is deleted once the model file is written.
    Everything that can refuse the run is checked before the DVCLive logger opens, so a
    refused run leaves the metrics of the last good one in place.

    ``initialize``, when given, loads starting weights into the network built from ``config``
    (``p.pretrained``'s ImageNet weights are then not loaded): a model file of the same network
    whose layers ``config`` adds to (ReCAM's second phase), or an encoder trained on another
    corpus (stage pretrain). Its files belong in ``inputs``.

    With ``dist.nproc`` > 1 the stage ``module`` runs again in that many processes under
    torchrun (DistributedDataParallel); only the first logs and writes.
    """
    device = resolve_device(run.device)
    schedule = Schedule(p.epochs, p.batch_size, run.seed, p.poly_power, p.workers, p.accumulate)
    check_schedule(len(train_set), schedule, dist.nproc)
    if run_in_workers(dist.nproc, module, device):
        return
    with process_group(device) as world:
        precision = resolve_precision(run.amp, world.local_device(device))
        seed_everything(run.seed)
        if initialize is None:
            model = build_model(network, config, pretrained=p.pretrained)
        else:
            model = build_model(network, config)
            initialize(model)
        freeze_backbone(model.backbone_parts(), p.freeze_bn, p.freeze_through)
        optimizer = build_optimizer(
            p.optimizer, model.param_groups(p.lr, p.head_lr_mult, p.weight_decay), p.momentum
        )
        # precision joins the digest only when mixed, the number of processes only when > 1:
        # float32 single-process checkpoints of before amp and dist stay valid
        mixed = [] if precision.dtype is None else [precision.name]
        processes = [] if world.size == 1 else [f"{world.size} processes"]
        digest = fingerprint(p.model_dump(), config, run.seed, *mixed, *processes, files=inputs)
        # Opening the logger resets the metrics in live_dir: only once every check has passed,
        # and only in the process that writes.
        with _live(live_dir, world.main) as logger:

            clock = EpochClock(p.epochs, len(train_set) // p.batch_size * p.batch_size)

            def log_epoch(epoch: int, scores: dict[str, float], seconds: float | None) -> None:
                with naming_storage_errors(live_dir):
                    logger.step = epoch
                    for name, value in scores.items():
                        logger.log_metric(name, value)
                    logger.next_step()
                shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                pace = "" if seconds is None else f" ({clock.lap(epoch, seconds)})"
                print(f"{network.KIND} epoch {epoch + 1}/{p.epochs}{pace}: {shown}", flush=True)

            fit(
                model,
                train_set,
                loss_fn,
                optimizer=optimizer,
                schedule=schedule,
                precision=precision,
                checkpoint=checkpoint,
                fingerprint=digest,
                validate=validate,
                validate_every=validate_every,
                log=log_epoch,
                world=world,
            )
        if world.main:
            save_model(out, model, config, train_set.layout.classes)
            checkpoint.unlink(missing_ok=True)  # it only serves to resume an interrupted run
            plots = live_dir / "plots" / "metrics"
            if plots.is_dir():  # DVCLive's curves: this stage's to replace next time
                mark_output(plots, module.rsplit(".", 1)[-1])
