"""Stage train_aff: AffinityNet trained on the confident regions of the CAMs (aff_labels).

Trains nothing, and writes an empty model folder, empty metrics and no curves, when aff_labels
wrote no labels (refine.method needs no affinity); the later stages read that as "no affinity".
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.runtime.files import check_output, mark_output
from stages.cli import (
    AFFINITY_MODEL_FILE,
    AffLabelsOption,
    CheckpointOption,
    DatasetOption,
    LiveDirOption,
    ParamsOption,
    check_outputs,
    not_trained,
    reported,
    require,
    run_stage,
)
from stages.params.aff import AffParams
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.run import read_run
from stages.params.splits import read_splits

app = typer.Typer(add_completion=False, help=__doc__)


def pair_loss(model, batch, _progress: float, radius: int):
    # the radius comes from the params: under DistributedDataParallel ``model`` is the wrapper
    from destseg.affinity.pairs import affinity_loss, training_pairs

    affinity = model(batch["image"])
    return affinity_loss(affinity, training_pairs(radius, affinity, batch["mask"]))["total"]


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    aff_labels: AffLabelsOption = Path("data/aff_labels"),
    out: Annotated[Path, typer.Option(help="Folder to write model.pt into.")] = Path(
        "data/train_aff"
    ),
    checkpoint: CheckpointOption = Path("data/checkpoints/train_aff.pt"),
    live_dir: LiveDirOption = Path("data/metrics/train_aff"),
) -> None:
    """Train on the aff_labels regions of splits.train; score pair accuracy on the masks of
    splits.val."""
    check_outputs("train_aff", folders=[out], files=[checkpoint, live_dir / "metrics.json"])
    p = read_params(params, "aff", AffParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    require(aff_labels, "affinity label folder (run the aff_labels stage)")
    if not any(aff_labels.glob("*.png")):
        why = f"{aff_labels} holds no labels (no affinity needed)"
        not_trained("train_aff", out, live_dir, why)
        return
    # torch and the networks load only for a stage that trains (seconds at every start)
    from destseg.affinity.validation import affinity_scores
    from destseg.dataset.torch_dataset import VOCDataset, train_transform
    from destseg.models.affinity_net import AffinityNet
    from destseg.runtime.device import model_device
    from stages.recipe import train_and_save

    train_ids = layout.ids(splits.train)
    train_set = VOCDataset(
        layout,
        train_ids,
        train_transform(p.crop_size, p.scale_range, p.color_jitter),
        mask_dir=aff_labels,
        with_labels=False,
    )
    val_set = VOCDataset(
        layout,
        layout.ids(splits.val),
        mask_dir=layout.root / "SegmentationClass",
        with_labels=False,
    )
    config = {
        "backbone": p.backbone,
        "output_stride": p.output_stride,
        "feature_stride": p.feature_stride,
        "radius": p.radius,
    }
    # model.pt is the folder's only file, written atomically (by one process of several)
    out = check_output(out, "train_aff")
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out, "train_aff")
    train_and_save(
        AffinityNet,
        config,
        train_set,
        partial(pair_loss, radius=p.radius),
        p=p,
        run=run,
        dist=dist,
        module=__spec__.name,
        inputs=[
            *(layout.image_path(i) for i in train_ids),
            *(aff_labels / f"{i}.png" for i in train_ids),
        ],
        out=out / AFFINITY_MODEL_FILE,
        checkpoint=checkpoint,
        live_dir=live_dir,
        validate=lambda model: affinity_scores(model, val_set, model_device(model)),
    )


if __name__ == "__main__":
    run_stage(app)
