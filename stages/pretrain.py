"""Stage pretrain: an encoder trained first on another corpus, to start the classifier from.

The references' classifiers start from ImageNet weights, which nothing offline can download and
the demo's ResNet-10 does not have. With ``pretrain.enabled`` this stage renders a corpus of the
embedded generator with its own classes and images (``pretrain.synthetic``, ``pretrain.seed``),
trains the plain CAM classifier on it with the classifier's recipe (section ``cls``: backbone,
crop, augmentation, optimizer, batch) for ``pretrain.epochs``, and writes it; train_cls then
starts its encoder from that one (its classifier head, for other classes, is left behind).
Otherwise it trains nothing and leaves its folder empty, and train_cls starts as ``cls.pretrained``
says. The corpus is rendered into a scratch folder and not kept.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.synthetic import SyntheticSpec, write_dataset
from destseg.runtime.files import check_output, mark_output
from stages.cli import (
    PRETRAINED_MODEL_FILE,
    CheckpointOption,
    InputError,
    LiveDirOption,
    ParamsOption,
    check_outputs,
    not_trained,
    reported,
    run_stage,
)
from stages.params.cls import ClsParams
from stages.params.dist import read_dist
from stages.params.pretrain import PretrainParams
from stages.params.reader import read_params
from stages.params.run import read_run

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[
        Path, typer.Option(help=f"Folder to write {PRETRAINED_MODEL_FILE} into.")
    ] = Path("data/pretrain"),
    checkpoint: CheckpointOption = Path("data/checkpoints/pretrain.pt"),
    live_dir: LiveDirOption = Path("data/metrics/pretrain"),
) -> None:
    """Train the plain classifier on the corpus of pretrain.synthetic; score mAP and F1 on its
    val images."""
    check_outputs("pretrain", folders=[out], files=[checkpoint, live_dir / "metrics.json"])
    pre = read_params(params, "pretrain", PretrainParams)
    if not pre.enabled:
        why = "pretrain.enabled is false (train_cls starts as cls.pretrained says)"
        not_trained("pretrain", out, live_dir, why)
        return
    p = read_params(params, "cls", ClsParams)
    if p.pretrained:
        raise InputError(
            f"{params}: cls.pretrained and pretrain.enabled both give the classifier its starting "
            "weights: set one of them false"
        )
    run = read_run(params).model_copy(update={"seed": pre.seed})
    dist = read_dist(params)
    phase = p.model_copy(update={"epochs": pre.epochs})
    spec = SyntheticSpec(**pre.synthetic.model_dump())
    out = check_output(out, "pretrain")
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "pretrain")
    # torch and the networks load only for a stage that trains (seconds at every start)
    from destseg.dataset.torch_dataset import VOCDataset, train_transform
    from destseg.evaluation.inference import classify
    from destseg.evaluation.metrics import multilabel_scores
    from destseg.models.classifier import Classifier
    from destseg.models.classifier_loss import classifier_loss
    from destseg.runtime.device import model_device
    from stages.recipe import train_and_save

    with tempfile.TemporaryDirectory(prefix="pretrain-corpus-") as scratch:
        layout = VOCLayout(Path(scratch))
        write_dataset(layout, spec, pre.seed)
        train_ids = layout.ids("train")
        train_set = VOCDataset(
            layout, train_ids, train_transform(p.crop_size, p.scale_range, p.color_jitter)
        )
        val_set = VOCDataset(layout, layout.ids("val"))
        config = {
            "backbone": p.backbone,
            "num_classes": spec.num_classes,
            "output_stride": p.output_stride,
        }
        train_and_save(
            Classifier,
            config,
            train_set,
            classifier_loss,
            p=phase,
            run=run,
            dist=dist,
            module=__spec__.name,
            # the corpus is rendered from the params, which the checkpoint's digest holds
            inputs=[],
            out=out / PRETRAINED_MODEL_FILE,
            checkpoint=checkpoint,
            live_dir=live_dir,
            validate=lambda model: multilabel_scores(
                *classify(model, val_set, model_device(model))
            ),
        )


if __name__ == "__main__":
    run_stage(app)
