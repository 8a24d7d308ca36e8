"""Diagnostic: do batch statistics estimated over intact + shuffled images hurt the LDM's CAM?

With the LDM on, every training batch holds the intact images and their region-confused copies,
so the BatchNorm statistics that normalise intact images at inference were estimated over both.
IRN freezes batch norm at ImageNet statistics (``freeze_bn``), which removes the question for
pretrained backbones; the demo trains from scratch, where that is not possible. This measures
what the mixing does: it re-estimates every BatchNorm's statistics of a trained classifier over
the train images twice, once over mixed batches (as training saw them) and once over intact
images only, and scores the CAMs of splits.score_cams with each (mIoU at cam.threshold, chosen
on splits.tune when auto, and at the best threshold of the sweep), plus how far the two sets of
statistics lie apart.

    python -m studies.bn_statistics [--params params.yaml] [--model data/train_cls/model.pt]
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pandas as pd
import torch
import typer
from torch import nn
from torch.utils.data import DataLoader

from destseg.cam.generate import ThresholdSweep, generate_cams
from destseg.dataset.torch_dataset import VOCDataset
from destseg.evaluation.metrics import segmentation_scores
from destseg.evaluation.thresholds import best_threshold, candidates
from studies.classifier_run import DatasetOption, ModelOption, ParamsOption, load_classifier_run


@torch.no_grad()
def reestimate(model: nn.Module, dataset: VOCDataset, mixed: bool, batch_size: int) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are the plain average over the dataset,
    of mixed (intact + shuffled) batches or of intact images alone."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    torch.manual_seed(0)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        model.branches(batch["image"], destruct=mixed)
    return model.eval()


def cam_scores(model, layout, scored, tune, scales, flip, threshold) -> dict[str, float]:
    """CAM mIoU of ``scored`` at ``threshold``, or with ``auto`` at the best one on ``tune``."""
    fixed = None if threshold == "auto" else threshold
    report, tuning = (ThresholdSweep(len(layout.classes), candidates(fixed)) for _ in range(2))
    sweeps = dict.fromkeys(scored, report) | dict.fromkeys(tune, tuning)
    with tempfile.TemporaryDirectory() as out:
        generate_cams(
            model,
            layout,
            list(sweeps),
            sweeps=sweeps,
            scales=scales,
            flip=flip,
            device=torch.device("cpu"),
            out_dir=Path(out),
        )
    chosen = best_threshold(tuning.table()) if fixed is None else fixed
    at = segmentation_scores(report.confusions[report.thresholds.index(chosen)])["miou"]
    return {
        "threshold": chosen,
        "CAM mIoU at the threshold": at,
        "best CAM mIoU of the sweep (oracle)": report.table()["miou"].max(),
    }


def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: ModelOption = Path("data/train_cls/model.pt"),
    dataset: DatasetOption = Path("data/dataset"),
) -> None:
    config, layout, model, stored = load_classifier_run(params, model_path, dataset)
    if not stored.get("ldm"):
        raise typer.BadParameter(f"{model_path} has no LDM branch", param_hint="--model")
    train = VOCDataset(layout, layout.ids(config["splits"]["train"]))
    scored = layout.ids(config["splits"]["score_cams"])
    tune = layout.ids(config["splits"]["tune"]) if config["splits"].get("tune") else []
    if config["cam"]["threshold"] == "auto" and not tune:
        raise typer.BadParameter(
            "cam.threshold auto needs images in splits.tune", param_hint="--params"
        )
    cam = config["cam"]
    variants = {
        "as trained (running averages)": model,
        "re-estimated over mixed batches": reestimate(
            model, train, True, config["cls"]["batch_size"]
        ),
        "re-estimated over intact images": reestimate(
            model, train, False, config["cls"]["batch_size"]
        ),
    }
    rows = []
    for name, variant in variants.items():
        scores = cam_scores(
            variant, layout, scored, tune, cam["scales"], cam["flip"], cam["threshold"]
        )
        rows.append({"batch statistics": name, **scores})
    mixed = variants["re-estimated over mixed batches"]
    intact = variants["re-estimated over intact images"]
    gaps = []
    for (name, a), b in zip(mixed.named_modules(), intact.modules(), strict=True):
        if isinstance(a, nn.BatchNorm2d):
            gaps.append(
                {
                    "layer": name,
                    "mean shift / std": (
                        (a.running_mean - b.running_mean).abs() / b.running_var.sqrt()
                    )
                    .mean()
                    .item(),
                    "variance ratio": (a.running_var / b.running_var).mean().item(),
                }
            )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))
    gaps = pd.DataFrame(gaps)
    print()
    print(gaps.describe().loc[["mean", "max"]].to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    typer.run(main)
