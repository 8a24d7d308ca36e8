"""Diagnostic: the CAM of each branch's term alone, beside the stacked CAM, each at its own
threshold, and where each is strong (synthetic data).

The stacked classifier's CAM is a sum of branch terms (w^ . F + w . F + w~ . F~; at inference the
LDM branch sees the image itself, F^ = F). With ``cls.branch_loss`` the LDM branch learns evidence
that survives the shuffle (its own mAP well above chance on shuffled images), yet the stacked CAM
does not spread over the bodies. Here every branch's term is made into a CAM exactly as make_cam
makes one (a copy of the classifier whose linear layer keeps only that branch's slice: ReLU,
scales and flips, max-normalised per class), its background threshold chosen on splits.tune as
``auto`` chooses (best mIoU there), then scored and profiled on splits.score_cams (part, body and
background shares above that threshold). If a branch's own map covers the bodies that the sum
does not, the defect is in how the branches are combined, not in what the branch learned.

    python -m studies.branch_cams [--params params.yaml] [--model data/train_cls/model.pt]
        [--dataset data/dataset]
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pandas as pd
import torch
import typer

from destseg.cam.generate import ThresholdSweep, generate_cams
from destseg.cam.profile import REGIONS, region_profile
from destseg.cam.store import load_cam
from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.synthetic import SyntheticSpec
from destseg.dataset.splits import cam_ids, tuning_ids
from destseg.evaluation.metrics import segmentation_scores
from destseg.evaluation.thresholds import best_threshold, candidates
from destseg.models.classifier import Classifier, branch_names
from studies.classifier_run import DatasetOption, ModelOption, ParamsOption, load_classifier_run


def branch_classifier(model: Classifier, branch: int) -> Classifier:
    """A copy of ``model`` whose CAM is branch ``branch``'s term alone: the linear layer's
    weights outside that branch's slice set to zero (the logits become that branch's own)."""
    alone = copy.deepcopy(model)
    channels = model.encoder.out_channels
    with torch.no_grad():
        weight = torch.zeros_like(alone.classifier.weight)
        part = slice(branch * channels, (branch + 1) * channels)
        weight[:, part] = model.classifier.weight[:, part]
        alone.classifier.weight.copy_(weight)
    return alone


def cam_profile(
    model: Classifier,
    layout: VOCLayout,
    splits: dict,
    spec: SyntheticSpec,
    data_seed: int,
    scales: list[float],
    flip: bool,
) -> dict[str, float]:
    """The CAM of ``model`` as make_cam makes it: the threshold best on ``splits['tune']``,
    the mIoU there and on ``splits['score_cams']`` at it, and the profile (``<region> share``:
    share of the region's pixels above the threshold, ``<region> CAM``: mean CAM)."""
    ids, scored = cam_ids(layout, splits["train"], splits["score_cams"])
    tune = tuning_ids(
        layout, splits["train"], splits["score_cams"], splits["tune"], wanted_by="the threshold"
    )
    report, tuning = (ThresholdSweep(len(layout.classes), candidates()) for _ in range(2))
    sweeps = dict.fromkeys(scored, report) | dict.fromkeys(tune, tuning)
    with tempfile.TemporaryDirectory() as folder:
        generate_cams(
            model, layout, ids, sweeps=sweeps, scales=scales, flip=flip,
            device=torch.device("cpu"), out_dir=Path(folder),
        )  # fmt: skip
        threshold = best_threshold(tuning.table())
        profile = region_profile(
            spec, data_seed, set(scored), lambda i: load_cam(Path(folder, f"{i}.npz")), threshold
        )
    index = report.thresholds.index(threshold)
    record = {
        "threshold": threshold,
        "tune mIoU": float(tuning.table()["miou"][index]),
        "mIoU": segmentation_scores(report.confusions[index])["miou"],
    }
    for region in REGIONS:
        record[f"{region} CAM"] = profile.loc[region, "mean_cam"]
        record[f"{region} share"] = profile.loc[region, "share_above"]
    return record


def branch_cam_profiles(
    model: Classifier,
    layout: VOCLayout,
    splits: dict,
    spec: SyntheticSpec,
    data_seed: int,
    scales: list[float],
    flip: bool,
) -> pd.DataFrame:
    """One row per branch of ``model`` (``ldm``, ``plain``, ``mdc``) and one for the stacked
    CAM (``stacked``): :func:`cam_profile` of each."""
    names = branch_names(model.ldm, model.mdc)
    models = {"stacked": model} | {
        name: branch_classifier(model, b) for b, name in enumerate(names)
    }
    rows = [
        {"branch": name, **cam_profile(m.eval(), layout, splits, spec, data_seed, scales, flip)}
        for name, m in models.items()
    ]
    return pd.DataFrame(rows)


def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: ModelOption = Path("data/train_cls/model.pt"),
    dataset: DatasetOption = Path("data/dataset"),
) -> None:
    config, layout, model, _ = load_classifier_run(params, model_path, dataset)
    data, cam = config["data"], config["cam"]
    table = branch_cam_profiles(
        model, layout, config["splits"], SyntheticSpec(**data["synthetic"]), data["seed"],
        cam["scales"], cam["flip"],
    )  # fmt: skip
    print(table.round(3).to_markdown(index=False))


if __name__ == "__main__":
    typer.run(main)
