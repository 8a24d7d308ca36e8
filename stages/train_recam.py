"""Stage train_recam: ReCAM's second training phase of the classifier (a positive control).

With ``recam.enabled`` the classifier of train_cls gets ReCAM's head and trains ``recam.epochs``
more epochs on the multi-label loss plus ReCAM's (:mod:`destseg.models.recam`), with the data,
augmentation, batch, optimizer and freezing of section ``cls`` (ReCAM's train_recam reuses
train_cam's), the network at ``recam.lr`` and the new head at ``recam.lr * recam.head_lr_mult``;
make_cam then makes ReCAM's CAMs from it. Otherwise it trains nothing and leaves its folder
empty, and make_cam reads the classifier of train_cls.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.runtime.files import check_output, mark_output
from stages.cli import (
    RECAM_MODEL_FILE,
    CheckpointOption,
    ClassifierOption,
    DatasetOption,
    LiveDirOption,
    ParamsOption,
    check_outputs,
    not_trained,
    reported,
    require,
    run_stage,
)
from stages.params.cls import ClsParams
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.recam import RecamParams
from stages.params.run import read_run
from stages.params.splits import read_splits

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    model_path: ClassifierOption = Path("data/train_cls/model.pt"),
    out: Annotated[Path, typer.Option(help=f"Folder to write {RECAM_MODEL_FILE} into.")] = Path(
        "data/train_recam"
    ),
    checkpoint: CheckpointOption = Path("data/checkpoints/train_recam.pt"),
    live_dir: LiveDirOption = Path("data/metrics/train_recam"),
) -> None:
    """Train the classifier of --model again with ReCAM's head on splits.train; score mAP and F1
    on splits.val."""
    check_outputs("train_recam", folders=[out], files=[checkpoint, live_dir / "metrics.json"])
    r = read_params(params, "recam", RecamParams)
    if not r.enabled:
        not_trained("train_recam", out, live_dir, "recam.enabled is false (make_cam reads --model)")
        return
    # torch and the networks load only for a stage that trains (seconds at every start)
    import torch

    from destseg.dataset.torch_dataset import VOCDataset, train_transform
    from destseg.evaluation.inference import classify
    from destseg.evaluation.metrics import multilabel_scores
    from destseg.models.classifier import Classifier, branch_names
    from destseg.models.classifier_loss import LossTerms, classifier_loss
    from destseg.models.model_file import load_model, load_weights
    from destseg.runtime.device import model_device
    from stages.recipe import train_and_save

    p = read_params(params, "cls", ClsParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    require(model_path, "classifier model file (run the train_cls stage)")
    _, stored = load_model(model_path, Classifier, torch.device("cpu"), len(layout.classes) - 1)
    train_ids = layout.ids(splits.train)
    train_set = VOCDataset(
        layout, train_ids, train_transform(p.crop_size, p.scale_range, p.color_jitter)
    )
    val_set = VOCDataset(layout, layout.ids(splits.val))
    phase = p.model_copy(update={"epochs": r.epochs, "lr": r.lr, "head_lr_mult": r.head_lr_mult})
    names = branch_names(stored.get("ldm"), stored.get("mdc"))
    # model.pt is the folder's only file, written atomically (by one process of several)
    out = check_output(out, "train_recam")
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "train_recam")
    train_and_save(
        Classifier,
        {**stored, "recam": True},
        train_set,
        partial(classifier_loss, terms=LossTerms(branches=tuple(names), recam=r.loss_weight)),
        p=phase,
        run=run,
        dist=dist,
        module=__spec__.name,
        inputs=[
            model_path,
            layout.root / "labels.json",
            *(layout.image_path(i) for i in train_ids),
        ],
        out=out / RECAM_MODEL_FILE,
        checkpoint=checkpoint,
        live_dir=live_dir,
        validate=lambda model: multilabel_scores(*classify(model, val_set, model_device(model))),
        initialize=partial(load_weights, path=model_path, network=Classifier),
    )


if __name__ == "__main__":
    run_stage(app)
