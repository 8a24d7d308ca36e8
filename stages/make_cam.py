"""Stage make_cam: class activation maps of the train images, scored against their masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from destseg.cam import SWEEP_THRESHOLDS, ThresholdSweep, generate_cams
from destseg.device import resolve_device
from destseg.files import atomic_path, write_json
from destseg.metrics import all_background, foreground_precision_recall, segmentation_scores
from destseg.models.checkpoint import load_model
from destseg.voc import VOCLayout
from stages.common import (
    DatasetOption,
    MetricsOption,
    ParamsOption,
    cam_ids,
    check_classes,
    check_mdc_scales,
    read_params,
    read_run,
    read_splits,
    reported,
    require,
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
    cam.threshold and over a sweep of thresholds."""
    p = read_params(params, "cam", CamParams)
    run = read_run(params)
    splits = read_splits(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    ids, scored = cam_ids(layout, splits)
    device = resolve_device(run.device)
    model, config = load_model(model_path, "classifier", device)
    num_classes = len(layout.classes)
    check_classes(config, num_classes - 1, model_path, layout)
    check_mdc_scales(config, p.scales, layout, ids)
    sweep = ThresholdSweep(num_classes, sorted({*SWEEP_THRESHOLDS.tolist(), p.threshold}))
    with atomic_path(out, directory=True) as tmp:
        generate_cams(model, layout, ids, scored, p.scales, p.flip, device, tmp, sweep)
    table = sweep.table()
    confusion = sweep.confusions[sweep.thresholds.index(p.threshold)]
    precision, recall = foreground_precision_recall(confusion)
    scores = {
        "miou": segmentation_scores(confusion)["miou"],
        "threshold": p.threshold,
        "fg_precision": precision,
        "fg_recall": recall,
        "all_background_miou": segmentation_scores(all_background(confusion))["miou"],
        # The best point of the curve on the same split: an oracle, not a result to report.
        "oracle_miou": float(table["miou"].max()),
        "oracle_threshold": float(table.loc[table["miou"].idxmax(), "threshold"]),
    }
    write_json(metrics, scores)
    with atomic_path(sweep_plot) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    print(f"make_cam: CAM mIoU {scores['miou']:.4f} at threshold {p.threshold}")


if __name__ == "__main__":
    app()
