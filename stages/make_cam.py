"""Stage make_cam: class activation maps of the train images, scored against their masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from destseg.cam import ThresholdSweep, generate_cams
from destseg.device import resolve_device, resolve_precision
from destseg.distributed import process_group, shared_directory
from destseg.files import atomic_path, write_json
from destseg.metrics import all_background, foreground_precision_recall, segmentation_scores
from destseg.models.checkpoint import load_model
from destseg.tuning import best_threshold, candidates
from destseg.voc import VOCLayout
from stages.common import (
    DatasetOption,
    MetricsOption,
    ParamsOption,
    cam_ids,
    check_classes,
    check_mdc_scales,
    read_dist,
    read_params,
    read_run,
    read_splits,
    reported,
    require,
    run_in_workers,
    tune_ids,
)
from stages.params import CamParams

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    model_path: Annotated[Path, typer.Option("--model", help="Classifier model file.")] = Path(
        "data/train_cls/model.pt"
    ),
    out: Annotated[Path, typer.Option(help="Folder of CAM files to write.")] = Path("data/cam"),
    metrics: MetricsOption = Path("data/metrics/make_cam.json"),
    sweep_plot: Annotated[Path, typer.Option(help="mIoU per threshold (CSV).")] = Path(
        "data/plots/cam_threshold_sweep.csv"
    ),
) -> None:
    """Write one CAM file per image of splits.train; score those of splits.score_cams at
    cam.threshold (with ``auto``, the best threshold on splits.tune) and over a sweep."""
    p = read_params(params, "cam", CamParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    ids, scored = cam_ids(layout, splits)
    tune = tune_ids(layout, splits, "cam.threshold" if p.threshold == "auto" else None)
    device = resolve_device(run.device)
    if run_in_workers(dist.nproc, __spec__.name, device):
        return
    with process_group(device) as world:
        device = world.local_device(device)
        model, config = load_model(model_path, "classifier", device)
        amp = resolve_precision(run.amp, device)
        amp.place(model)
        num_classes = len(layout.classes)
        check_classes(config, num_classes - 1, model_path, layout)
        check_mdc_scales(config, p.scales, layout, ids)
        fixed = None if p.threshold == "auto" else p.threshold
        report, tuning = (ThresholdSweep(num_classes, candidates(fixed)) for _ in range(2))
        sweeps = dict.fromkeys(scored, report) | dict.fromkeys(tune, tuning)
        with shared_directory(out, world) as tmp, amp.autocast():
            generate_cams(
                model, layout, ids, sweeps, p.scales, p.flip, device, tmp, p.batch_size, world
            )
        for sweep in (report, tuning):  # each process scored its shard
            sweep.confusions = world.sum(sweep.confusions)
        if not world.main:
            return
    table, tune_table = report.table(), tuning.table()
    threshold = best_threshold(tune_table) if fixed is None else fixed
    confusion = report.confusions[report.thresholds.index(threshold)]
    precision, recall = foreground_precision_recall(confusion)
    scores = {
        "miou": segmentation_scores(confusion)["miou"],
        "threshold": threshold,
        "fg_precision": precision,
        "fg_recall": recall,
        "all_background_miou": segmentation_scores(all_background(confusion))["miou"],
        # The best point of the curve on the reported split: an oracle, not a result to report.
        "oracle_miou": float(table["miou"].max()),
        "oracle_threshold": best_threshold(table),
    }
    if tune:
        scores["tune_miou"] = float(
            tune_table.loc[tune_table["threshold"] == threshold, "miou"].iloc[0]
        )
        table["tune_miou"] = tune_table["miou"]
    write_json(metrics, scores)
    with atomic_path(sweep_plot) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    chosen = "tuned on splits.tune" if fixed is None else "cam.threshold"
    print(f"make_cam: CAM mIoU {scores['miou']:.4f} at threshold {threshold} ({chosen})")


if __name__ == "__main__":
    app()
