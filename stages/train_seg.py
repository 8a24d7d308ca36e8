"""Stage train_seg: DeepLabV3 trained on the pseudo-masks (or, for the upper bound, the truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch.nn.functional as F
import typer

from destseg.dataset.layout import IGNORE_INDEX, VOCLayout
from destseg.dataset.torch_dataset import VOCDataset, train_transform
from destseg.evaluation.inference import validation_confusion
from destseg.evaluation.metrics import segmentation_scores
from destseg.models.segmenter import Segmenter
from destseg.runtime.device import model_device
from stages.cli import (
    CheckpointOption,
    DatasetOption,
    InputError,
    LiveDirOption,
    ParamsOption,
    PseudoMasksOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.run import read_run
from stages.params.seg import SegParams
from stages.params.splits import read_splits
from stages.recipe import train_and_save

app = typer.Typer(add_completion=False, help=__doc__)


def segmentation_loss(model, batch, _progress: float):
    logits = model(batch["image"]).float()  # the loss in float32 under autocast too
    return F.cross_entropy(logits, batch["mask"], ignore_index=IGNORE_INDEX)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    pseudo_masks: PseudoMasksOption = Path("data/pseudo_mask"),
    out: Annotated[Path, typer.Option(help="Model file to write.")] = Path(
        "data/train_seg/model.pt"
    ),
    checkpoint: CheckpointOption = Path("data/checkpoints/train_seg.pt"),
    live_dir: LiveDirOption = Path("data/metrics/train_seg"),
) -> None:
    """Train on splits.train with seg.labels masks (pseudo or gt), 255 ignored; every
    seg.val_every epochs, the mIoU on seg.val_images images of splits.val."""
    check_outputs("train_seg", files=[out, checkpoint, live_dir / "metrics.json"])
    p = read_params(params, "seg", SegParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    if p.batch_size // (dist.nproc * p.accumulate) == 1 and dist.nproc == 1:
        # DeepLabV3's ASPP pools the whole image: with one image its batch norm sees a single
        # value per channel and torch refuses to train it (several processes sync it)
        raise InputError(
            f"{params}: seg.batch_size / seg.accumulate = 1 image per micro-batch, which "
            "DeepLabV3's image-pooling batch norm cannot train on; use micro-batches of 2 or "
            "more (accumulate at most batch_size / 2)"
        )
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    if p.labels == "pseudo":
        mask_dir = require(pseudo_masks, "pseudo-mask folder (run the refine stage)")
    else:
        mask_dir = layout.root / "SegmentationClass"
    train_ids = layout.ids(splits.train)
    train_set = VOCDataset(
        layout,
        train_ids,
        train_transform(p.crop_size, p.scale_range, p.color_jitter),
        mask_dir=mask_dir,
        with_labels=False,
    )
    validate = None
    if p.val_every:
        val_set = VOCDataset(
            layout,
            layout.ids(splits.val)[: p.val_images],
            mask_dir=layout.root / "SegmentationClass",
            with_labels=False,
        )
        unmasked = [i for i in val_set.ids if not layout.mask_path(i).is_file()]
        if unmasked:  # before the training, not after its first epochs
            raise InputError(
                f"{params}: seg.val_every validates on masks, and {len(unmasked)} of the "
                f"{len(val_set)} images of splits.val ({splits.val!r}) it takes have none (first: "
                f"{layout.mask_path(unmasked[0])}); set seg.val_every: 0 or choose a masked list"
            )

        def validate(model):
            confusion = validation_confusion(
                model, val_set, len(layout.classes), model_device(model)
            )
            return {"miou": segmentation_scores(confusion)["miou"]}

    config = {
        "backbone": p.backbone,
        "num_classes": len(layout.classes),
        "output_stride": p.output_stride,
    }
    train_and_save(
        Segmenter,
        config,
        train_set,
        segmentation_loss,
        p=p,
        run=run,
        dist=dist,
        module=__spec__.name,
        inputs=[
            *(layout.image_path(i) for i in train_ids),
            *(mask_dir / f"{i}.png" for i in train_ids),
        ],
        out=out,
        checkpoint=checkpoint,
        live_dir=live_dir,
        validate=validate,
        validate_every=p.val_every,
    )


if __name__ == "__main__":
    run_stage(app)
