"""Stage make_cam: class activation maps of the train images, scored against their masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from destseg.cam.generate import ThresholdSweep, generate_cams
from destseg.dataset.layout import VOCLayout
from destseg.dataset.splits import cam_ids, tuning_ids
from destseg.evaluation.metrics import (
    all_background,
    foreground_precision_recall,
    segmentation_scores,
)
from destseg.evaluation.thresholds import ThresholdPolicy, best_threshold
from destseg.models.classifier import Classifier
from destseg.models.model_file import load_model
from destseg.runtime.device import resolve_device, resolve_precision
from destseg.runtime.distributed import process_group, shared_directory
from destseg.runtime.files import atomic_path, outputs_together, write_json
from stages.cli import (
    RECAM_MODEL_FILE,
    ClassifierOption,
    DatasetOption,
    MetricsOption,
    ParamsOption,
    RecamOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.cam import CamParams
from stages.params.cam_scales import check_mdc_scales
from stages.params.dist import read_dist
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
    model_path: ClassifierOption = Path("data/train_cls/model.pt"),
    recam: RecamOption = Path("data/train_recam"),
    out: Annotated[Path, typer.Option(help="Folder of CAM files to write.")] = Path("data/cam"),
    metrics: MetricsOption = Path("data/metrics/make_cam.json"),
    sweep_plot: Annotated[Path, typer.Option(help="mIoU per threshold (CSV).")] = Path(
        "data/plots/cam_threshold_sweep.csv"
    ),
) -> None:
    """Write one CAM file per image of splits.train; score those of splits.score_cams at
    cam.threshold (with ``auto``, the best threshold on splits.tune) and over a sweep. The
    classifier is --model, or ReCAM's where train_recam wrote one into --recam."""
    check_outputs("make_cam", folders=[out], files=[metrics, sweep_plot])
    p = read_params(params, "cam", CamParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    ids, scored = cam_ids(layout, splits.train, splits.score_cams)
    policy = ThresholdPolicy("cam.threshold", p.threshold)
    tune = tuning_ids(
        layout, splits.train, splits.score_cams, splits.tune, wanted_by=policy.needs_tuning
    )
    require(model_path, "classifier model file (run the train_cls stage)")
    if (require(recam, "ReCAM folder (run the train_recam stage)") / RECAM_MODEL_FILE).is_file():
        model_path = recam / RECAM_MODEL_FILE
    device = resolve_device(run.device)
    if run_in_workers(dist.nproc, __spec__.name, device):
        return
    # the CAM folder, the metrics and the sweep are swapped in together, once all are written
    with process_group(device) as world, outputs_together():
        device = world.local_device(device)
        num_classes = len(layout.classes)
        model, config = load_model(model_path, Classifier, device, num_classes - 1)
        amp = resolve_precision(run.amp, device)
        amp.place(model)
        check_mdc_scales(config, p.scales, layout.smallest_side(ids))
        report, tuning = (ThresholdSweep(num_classes, policy.sweep()) for _ in range(2))
        sweeps = dict.fromkeys(scored, report) | dict.fromkeys(tune, tuning)
        with shared_directory(out, world, "make_cam") as tmp, amp.autocast():
            generate_cams(
                model,
                layout,
                ids,
                sweeps=sweeps,
                scales=p.scales,
                flip=p.flip,
                device=device,
                out_dir=tmp,
                batch_size=p.batch_size,
                world=world,
            )
        for sweep in (report, tuning):  # each process scored its shard
            sweep.confusions = world.sum(sweep.confusions)
        if not world.main:
            return
        scores = _write_scores(
            report if scored else None, tuning if tune else None, policy, metrics, sweep_plot
        )
    score = f"CAM mIoU {scores['miou']:.4f}" if scored else "CAMs not scored (splits.score_cams)"
    print(f"make_cam: {score} at threshold {scores['threshold']} ({policy.described()})")


def _write_scores(
    report: ThresholdSweep | None,
    tuning: ThresholdSweep | None,
    policy: ThresholdPolicy,
    metrics: Path,
    sweep_plot: Path,
) -> dict:
    """Score the CAMs of the reported images (``report``; None: there are none) at the
    policy's threshold (chosen on ``tuning`` for ``auto``), write the metrics and the sweep,
    and return the metrics. Without reported images the metrics hold the threshold alone
    and the sweep's ``miou`` column is empty."""
    tune_table = tuning.table() if tuning is not None else None
    threshold, tuned = policy.choose(tune_table)
    scores: dict = {"threshold": threshold}
    if report is not None:
        table = report.table()
        confusion = report.confusions[report.thresholds.index(threshold)]
        precision, recall = foreground_precision_recall(confusion)
        scores = {
            "miou": segmentation_scores(confusion)["miou"],
            "threshold": threshold,
            "fg_precision": precision,
            "fg_recall": recall,
            "all_background_miou": segmentation_scores(all_background(confusion))["miou"],
            # The best point of the curve on the reported split: an oracle, not a result.
            "oracle_miou": float(table["miou"].max()),
            "oracle_threshold": best_threshold(table),
        }
    else:
        thresholds = policy.sweep()
        table = pd.DataFrame({"threshold": thresholds, "miou": [float("nan")] * len(thresholds)})
    scores |= tuned
    if tune_table is not None:
        table["tune_miou"] = tune_table["miou"]
    write_json(metrics, scores)
    with atomic_path(sweep_plot) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    return scores


if __name__ == "__main__":
    run_stage(app)
