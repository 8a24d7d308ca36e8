"""Stage evaluate: the segmenter on the val split: mIoU, per-class IoU, predicted masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.evaluation.inference import evaluate_segmenter
from destseg.evaluation.metrics import (
    all_background,
    per_class_table,
    per_image_table,
    segmentation_scores,
)
from destseg.figures.confusion import save_confusion_figure
from destseg.models.model_file import load_model
from destseg.models.segmenter import Segmenter
from destseg.runtime.device import resolve_device, resolve_precision
from destseg.runtime.distributed import process_group, shared_directory
from destseg.runtime.files import atomic_path, outputs_together, write_json
from stages.cli import (
    DatasetOption,
    MetricsOption,
    ParamsOption,
    SegmenterOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.dist import read_dist
from stages.params.evaluate import EvaluateParams
from stages.params.reader import read_params
from stages.params.run import read_run
from stages.params.splits import read_splits
from stages.torchrun import run_in_workers

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
    per_image: Annotated[
        Path, typer.Option(help="Each image's mIoU and pixel accuracy, worst first (CSV).")
    ] = Path("data/metrics/evaluate_per_image.csv"),
) -> None:
    """Predict every image of splits.val (evaluate.scales, evaluate.flip); score the predictions,
    the whole split and each image."""
    outputs = [metrics, per_class, confusion_figure, per_image]
    check_outputs("evaluate", folders=[predictions], files=outputs)
    p = read_params(params, "evaluate", EvaluateParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    device = resolve_device(run.device)
    if run_in_workers(dist.nproc, __spec__.name, device):
        return
    # the predictions, the metrics, the table and the figure are swapped in together
    with process_group(device) as world, outputs_together():
        device = world.local_device(device)
        model, _ = load_model(model_path, Segmenter, device, len(layout.classes))
        amp = resolve_precision(run.amp, device)
        amp.place(model)
        all_ids = layout.ids(splits.val)
        ids = world.shard(all_ids)
        with shared_directory(predictions, world, "evaluate") as tmp, amp.autocast():
            confusion, own = evaluate_segmenter(
                model,
                layout,
                ids,
                scales=p.scales,
                flip=p.flip,
                device=device,
                out_dir=tmp,
                progress=world.main,
            )
        confusion = world.sum(confusion)  # the processes' confusions merge, not predictions
        scores_by_image = world.unshard(own, len(all_ids))
        if not world.main:
            return
        scores = segmentation_scores(confusion)
        scores["all_background_miou"] = segmentation_scores(all_background(confusion))["miou"]
        write_json(metrics, scores)
        with atomic_path(per_class) as tmp:
            table = per_class_table(confusion, layout.classes)
            table.to_csv(tmp, index=False, float_format="%.6f")
        save_confusion_figure(confusion_figure, confusion, layout.classes)
        with atomic_path(per_image) as tmp:
            table = per_image_table(all_ids, scores_by_image, layout.labels, layout.classes)
            table.to_csv(tmp, index=False, float_format="%.6f")
    print(f"evaluate: mIoU {scores['miou']:.4f}, pixel accuracy {scores['pixel_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(app)
