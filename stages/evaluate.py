"""Stage evaluate: the segmenter on the val split: mIoU, per-class IoU, predicted masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from destseg.confusion_figure import save_confusion_figure
from destseg.device import resolve_device, resolve_precision
from destseg.distributed import process_group, shared_directory
from destseg.files import atomic_path, write_json
from destseg.inference import evaluate_segmenter
from destseg.metrics import all_background, per_class_table, segmentation_scores
from destseg.models.checkpoint import load_model
from destseg.voc import VOCLayout
from stages.common import (
    DatasetOption,
    MetricsOption,
    ParamsOption,
    SegmenterOption,
    check_classes,
    read_dist,
    read_params,
    read_run,
    read_splits,
    reported,
    require,
    run_in_workers,
)
from stages.params import EvaluateParams

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    model_path: SegmenterOption = Path("data/train_seg/model.pt"),
    predictions: Annotated[Path, typer.Option(help="Folder of predicted masks.")] = Path(
        "data/evaluate/prediction"
    ),
    metrics: MetricsOption = Path("data/metrics/evaluate.json"),
    per_class: Annotated[Path, typer.Option(help="Per-class IoU table (CSV).")] = Path(
        "data/metrics/evaluate_per_class.csv"
    ),
    confusion_figure: Annotated[
        Path, typer.Option("--confusion", help="Normalised confusion matrix (PNG).")
    ] = Path("data/plots/evaluate_confusion.png"),
) -> None:
    """Predict every image of splits.val (evaluate.scales, evaluate.flip); score the predictions."""
    p = read_params(params, "evaluate", EvaluateParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    device = resolve_device(run.device)
    if run_in_workers(dist.nproc, __spec__.name, device):
        return
    with process_group(device) as world:
        device = world.local_device(device)
        model, config = load_model(model_path, "segmenter", device)
        amp = resolve_precision(run.amp, device)
        amp.place(model)
        check_classes(config, len(layout.classes), model_path, layout)
        ids = world.shard(layout.ids(splits.val))
        with shared_directory(predictions, world) as tmp, amp.autocast():
            confusion = evaluate_segmenter(model, layout, ids, p.scales, p.flip, device, tmp)
        confusion = world.sum(confusion)  # the processes' confusions merge, not predictions
        if not world.main:
            return
    scores = segmentation_scores(confusion)
    scores["all_background_miou"] = segmentation_scores(all_background(confusion))["miou"]
    write_json(metrics, scores)
    with atomic_path(per_class) as tmp:
        per_class_table(confusion, layout.classes).to_csv(tmp, index=False, float_format="%.6f")
    save_confusion_figure(confusion_figure, confusion, layout.classes)
    print(f"evaluate: mIoU {scores['miou']:.4f}, pixel accuracy {scores['pixel_accuracy']:.4f}")


if __name__ == "__main__":
    app()
