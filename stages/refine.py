"""Stage refine: the pseudo-masks segmentation trains on, by the method of refine.method.

* ``crf``: the CAMs, background at ``bg_threshold``, refined by the dense CRF;
* ``affinity``: the propagated CAMs, background at ``propagated_bg_threshold``;
* ``affinity+crf``: the propagated CAMs refined by the dense CRF.

With ``auto``, the threshold is the one with the best pseudo-mask mIoU on ``splits.tune``
(each method, and each classifier variant, gets its own); it lands in the metrics as
``bg_threshold``. Whatever the method, the metrics have the same names, so ``dvc metrics diff``
compares them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import torch
import typer

from destseg.dataset.layout import VOCLayout
from destseg.dataset.splits import cam_ids, tuning_ids
from destseg.evaluation.thresholds import ThresholdPolicy
from destseg.figures.confusion import save_confusion_figure
from destseg.refine.crf import DenseCRF
from destseg.refine.labellers import ThresholdLabeller, crf_pseudo_mask, threshold_pseudo_mask
from destseg.refine.labelling import label_split, threshold_sweep
from destseg.runtime.distributed import process_group, shared_directory
from destseg.runtime.files import outputs_together, write_json
from stages.cli import (
    CamsOption,
    DatasetOption,
    InputError,
    MetricsOption,
    ParamsOption,
    PropagatedOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.dist import read_dist
from stages.params.reader import read_params
from stages.params.refine import RefineParams
from stages.params.refine_method import AFFINITY_METHODS
from stages.params.splits import read_splits
from stages.torchrun import run_in_workers

app = typer.Typer(add_completion=False, help=__doc__)


def labeller(p: RefineParams) -> ThresholdLabeller:
    """The pseudo-mask labeller of ``p.method``, its background threshold left open."""
    if p.method == "affinity":
        return threshold_pseudo_mask
    crf = DenseCRF(**p.crf.model_dump())
    return partial(crf_pseudo_mask, crf=crf, min_confidence=p.min_confidence)


def threshold_policy(p: RefineParams) -> ThresholdPolicy:
    """The background threshold ``p.method`` uses: against the CAMs (crf) or against the
    propagated CAMs (affinity methods)."""
    if p.method in AFFINITY_METHODS:
        return ThresholdPolicy("refine.propagated_bg_threshold", p.propagated_bg_threshold)
    return ThresholdPolicy("refine.bg_threshold", p.bg_threshold)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    cams: CamsOption = Path("data/cam"),
    propagated: PropagatedOption = Path("data/propagated_cam"),
    out: Annotated[Path, typer.Option(help="Folder of pseudo-masks to write.")] = Path(
        "data/pseudo_mask"
    ),
    metrics: MetricsOption = Path("data/metrics/refine.json"),
    confusion: Annotated[
        Path, typer.Option(help="Normalised confusion matrix of the scored pseudo-masks (PNG).")
    ] = Path("data/plots/pseudo_mask_confusion.png"),
) -> None:
    """Write one palette PNG pseudo-mask per image of splits.train; score those of
    splits.score_cams against their masks."""
    check_outputs("refine", folders=[out], files=[metrics, confusion])
    p = read_params(params, "refine", RefineParams)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    ids, scored = cam_ids(layout, splits.train, splits.score_cams)
    if p.method in AFFINITY_METHODS:
        source = require(propagated, "propagated CAM folder (run the propagate stage)")
        missing = [i for i in ids if not (source / f"{i}.npz").is_file()]
        if missing:
            raise InputError(
                f"{source}: no propagated CAMs for {len(missing)} of {len(ids)} images (e.g. "
                f"{missing[0]}); run `dvc repro` so that aff_labels, train_aff and propagate "
                f"run for refine.method {p.method}"
            )
    else:
        source = require(cams, "CAM folder (run the make_cam stage)")
    policy = threshold_policy(p)
    tune = tuning_ids(
        layout, splits.train, splits.score_cams, splits.tune, wanted_by=policy.needs_tuning
    )
    if run_in_workers(dist.nproc, __spec__.name):
        return
    label = labeller(p)
    # the CRF runs on the CPU: gloo between the processes, each with its p.workers
    # the pseudo-masks, the metrics and the figure are swapped in together, once all are written
    with process_group(torch.device("cpu")) as world, outputs_together():
        # auto runs every candidate on the tuning images; a number is only scored there
        tuning = None
        if tune:
            tuning = threshold_sweep(
                layout,
                tune,
                cam_dir=source,
                labeller=label,
                thresholds=policy.tuning_sweep(),
                workers=p.workers,
                description="refine: tuning",
                world=world,
            )
        threshold, tuned = policy.choose(tuning)
        with shared_directory(out, world, "refine") as tmp:
            scores, counts = label_split(
                layout,
                ids,
                scored,
                cam_dir=source,
                out_dir=tmp,
                labeller=partial(label, bg_threshold=threshold),
                workers=p.workers,
                description="refine",
                world=world,
            )
        if not world.main:
            return
        write_json(metrics, {**scores, "bg_threshold": threshold, **tuned})
        save_confusion_figure(confusion, counts, layout.classes)
    score = f"pseudo-mask mIoU {scores['miou']:.4f}" if scored else "pseudo-masks not scored"
    chosen = f"background threshold {threshold} ({policy.described()})"
    print(f"refine ({p.method}): {score} at {chosen}")


if __name__ == "__main__":
    run_stage(app)
