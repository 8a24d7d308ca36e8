"""Diagnostic: do batch statistics estimated over intact + shuffled images hurt the LDM's CAM?

With the LDM on, every training batch holds the intact images and their region-confused copies,
so the BatchNorm statistics that normalise intact images at inference were estimated over both.
IRN freezes batch norm at ImageNet statistics (``freeze_bn``), which removes the question for
pretrained backbones; the demo trains from scratch, where that is not possible. This measures
what the mixing does: it re-estimates every BatchNorm's statistics of a trained classifier over
the train images twice, once over mixed batches (as training saw them) and once over intact
images only, and scores the CAMs of splits.score_cams with each (mIoU at cam.threshold and at
the best threshold of the sweep), plus how far the two sets of statistics lie apart.

    python benchmarks/ldm_bn_statistics.py [--params params.yaml] [--model data/train_cls/model.pt]
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
import typer
import yaml
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.cam import SWEEP_THRESHOLDS, ThresholdSweep, generate_cams
from destseg.data import VOCDataset
from destseg.metrics import segmentation_scores
from destseg.models.checkpoint import load_model
from destseg.voc import VOCLayout


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


def cam_scores(model, layout, ids, scales, flip, threshold) -> dict[str, float]:
    sweep = ThresholdSweep(len(layout.classes), sorted({*SWEEP_THRESHOLDS.tolist(), threshold}))
    with tempfile.TemporaryDirectory() as out:
        generate_cams(
            model, layout, ids, set(ids), scales, flip, torch.device("cpu"), Path(out), sweep
        )
    table = sweep.table()
    at = segmentation_scores(sweep.confusions[sweep.thresholds.index(threshold)])["miou"]
    return {"CAM mIoU at cam.threshold": at, "best CAM mIoU of the sweep": table["miou"].max()}


def main(
    params: Annotated[Path, typer.Option()] = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model")] = Path("data/train_cls/model.pt"),
    dataset: Annotated[Path, typer.Option()] = Path("data/dataset"),
) -> None:
    config = yaml.safe_load(params.read_text())
    layout = VOCLayout(dataset)
    model, stored = load_model(model_path, "classifier", torch.device("cpu"))
    if not stored.get("ldm"):
        raise typer.BadParameter(f"{model_path} has no LDM branch", param_hint="--model")
    train = VOCDataset(layout, layout.ids(config["splits"]["train"]))
    scored = layout.ids(config["splits"]["score_cams"])
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
        scores = cam_scores(variant, layout, scored, cam["scales"], cam["flip"], cam["threshold"])
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
