"""Stage train_cls: the multi-label classifier trained on image-level labels only."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.dataset.splits import check_lists
from destseg.dataset.torch_dataset import VOCDataset, train_transform
from destseg.evaluation.inference import classify
from destseg.evaluation.metrics import multilabel_scores
from destseg.models.classifier import Classifier, branch_names
from destseg.models.classifier_loss import LossTerms, classifier_loss
from destseg.models.model_file import load_encoder
from destseg.runtime.device import model_device
from stages.cli import (
    PRETRAINED_MODEL_FILE,
    CheckpointOption,
    DatasetOption,
    InputError,
    LiveDirOption,
    ParamsOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.cam_scales import CamScalesParams, check_mdc_scales
from stages.params.cls import ClsParams
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.run import read_run
from stages.params.splits import read_splits
from stages.recipe import train_and_save

app = typer.Typer(add_completion=False, help=__doc__)


def loss_terms(p: ClsParams) -> LossTerms:
    """What the classifier's loss adds to the stacked logits' multi-label loss: each branch's
    own loss (``branch_loss``), Puzzle-CAM's terms (``puzzle``)."""
    puzzle = p.puzzle
    return LossTerms(
        branches=tuple(branch_names(**p.variant())),
        branch_loss=p.branch_loss,
        tiles=puzzle.tiles if puzzle.enabled else 0,
        alpha=puzzle.alpha,
        alpha_ramp=puzzle.alpha_ramp,
    )


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    out: Annotated[Path, typer.Option(help="Model file to write.")] = Path(
        "data/train_cls/model.pt"
    ),
    checkpoint: CheckpointOption = Path("data/checkpoints/train_cls.pt"),
    live_dir: LiveDirOption = Path("data/metrics/train_cls"),
    pretrain: Annotated[
        Path | None,
        typer.Option(help=f"pretrain's folder: its {PRETRAINED_MODEL_FILE}, if any, starts it."),
    ] = None,
) -> None:
    """Train on the image-level labels of splits.train; score mAP and F1 on splits.val."""
    check_outputs("train_cls", files=[out, checkpoint, live_dir / "metrics.json"])
    p = read_params(params, "cls", ClsParams)
    run = read_run(params)
    cam_scales = read_params(params, "cam", CamScalesParams).scales
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    # the lists of the later stages too: a wrong one fails here in seconds, not after training
    # (they are checked, not read: their names cannot change the model, nor rerun this stage)
    check_lists(layout, splits.train, splits.val, splits.score_cams, splits.tune)
    train_ids = layout.ids(splits.train)
    train_set = VOCDataset(
        layout, train_ids, train_transform(p.crop_size, p.scale_range, p.color_jitter)
    )
    val_set = VOCDataset(layout, layout.ids(splits.val))
    variant = p.variant()
    config = {
        "backbone": p.backbone,
        "num_classes": len(layout.classes) - 1,
        "output_stride": p.output_stride,
        **variant,
    }
    # before hours of training, not after
    check_mdc_scales(config, cam_scales, layout.smallest_side(train_ids))
    encoder = None  # dvc.yaml passes pretrain's folder; a run by hand may leave it out
    if pretrain is not None:
        encoder = require(pretrain, "pretrain folder (run the pretrain stage)") / (
            PRETRAINED_MODEL_FILE
        )
        encoder = encoder if encoder.is_file() else None
    if encoder is not None and p.pretrained:
        raise InputError(
            f"{encoder}: pretrain trained an encoder and cls.pretrained asks for ImageNet's: set "
            "one of cls.pretrained and pretrain.enabled false"
        )
    train_and_save(
        Classifier,
        config,
        train_set,
        partial(classifier_loss, terms=loss_terms(p)),
        p=p,
        run=run,
        dist=dist,
        module=__spec__.name,
        inputs=[
            layout.root / "labels.json",
            *(layout.image_path(i) for i in train_ids),
            *([encoder] if encoder is not None else []),
        ],
        out=out,
        checkpoint=checkpoint,
        live_dir=live_dir,
        validate=lambda model: multilabel_scores(*classify(model, val_set, model_device(model))),
        initialize=(partial(load_encoder, path=encoder, network=Classifier) if encoder else None),
    )


if __name__ == "__main__":
    run_stage(app)
