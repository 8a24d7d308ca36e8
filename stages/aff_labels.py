"""Stage aff_labels: confident foreground and background regions of the CAMs, the labels
AffinityNet trains on. Writes nothing (an empty folder) when refine.method needs no affinity."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import torch
import typer

from destseg.dataset.layout import VOCLayout
from destseg.dataset.splits import cam_ids
from destseg.refine.crf import DenseCRF
from destseg.refine.labellers import confident_labels
from destseg.refine.labelling import label_split
from destseg.runtime.distributed import process_group, shared_directory
from destseg.runtime.files import empty_directory, outputs_together, write_json
from stages.cli import (
    CamsOption,
    DatasetOption,
    MetricsOption,
    ParamsOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.aff_labels import AffLabelsParams
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.refine_method import AFFINITY_METHODS, RefineMethodParams
from stages.params.splits import read_splits
from stages.torchrun import run_in_workers

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    cams: CamsOption = Path("data/cam"),
    out: Annotated[Path, typer.Option(help="Folder of affinity label PNGs to write.")] = Path(
        "data/aff_labels"
    ),
    metrics: MetricsOption = Path("data/metrics/aff_labels.json"),
) -> None:
    """One PNG per image of splits.train: a class, 0 (background) or 255 (unsure); the labelled
    pixels of splits.score_cams are scored against their masks."""
    check_outputs("aff_labels", folders=[out], files=[metrics])
    p = read_params(params, "aff_labels", AffLabelsParams)
    method = read_params(params, "refine", RefineMethodParams).method
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    require(cams, "CAM folder (run the make_cam stage)")
    ids, scored = cam_ids(layout, splits.train, splits.score_cams)
    if method not in AFFINITY_METHODS:
        print(f"aff_labels: refine.method is {method}: no affinity labels needed")
        with outputs_together():
            empty_directory(out, "aff_labels")
            write_json(metrics, {})
        return
    if run_in_workers(dist.nproc, __spec__.name):
        return
    crf = DenseCRF(**p.crf.model_dump(exclude={"enabled"})) if p.crf.enabled else None
    labeller = partial(confident_labels, conf_fg=p.conf_fg, conf_bg=p.conf_bg, crf=crf)
    # the labels and the metrics are swapped in together, once both are written
    with process_group(torch.device("cpu")) as world, outputs_together():
        with shared_directory(out, world, "aff_labels") as tmp:
            scores, _ = label_split(
                layout,
                ids,
                scored,
                cam_dir=cams,
                out_dir=tmp,
                labeller=labeller,
                workers=p.workers,
                description="aff_labels",
                world=world,
            )
        if not world.main:
            return
        write_json(metrics, scores)
    score = f"mIoU {scores['miou']:.4f} on them" if scored else "not scored (splits.score_cams)"
    print(f"aff_labels: {1 - scores['ignored_fraction']:.1%} of the pixels labelled, {score}")


if __name__ == "__main__":
    run_stage(app)
