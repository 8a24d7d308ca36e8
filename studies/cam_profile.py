"""Diagnostic: where the CAM of an object's class is strong, part versus body versus background.

Regenerates the part maps of the synthetic train images from params.yaml (the dataset does not
store them) and averages the stored normalised CAM (data/cam) of each labelled class over the
part pixels of that class's objects, over the rest of those objects, and over the background.
A classifier that relies on the discriminative parts has a CAM much stronger on the parts than
on the bodies: the gap that weakly supervised methods try to close. Also the share of each
region's pixels above the threshold make_cam scored at (for the background: the false
positives); with ``cam.threshold: auto`` that is the threshold chosen on splits.tune, read
from make_cam's metrics. Only the images of splits.score_cams (the reported ones) count.

    python -m studies.cam_profile [--params params.yaml] [--cams data/cam]
        [--metrics data/metrics/make_cam.json] [--dataset data/dataset]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from destseg.cam.profile import region_profile
from destseg.cam.store import load_cam
from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.synthetic import SyntheticSpec


def main(
    params: Annotated[Path, typer.Option()] = Path("params.yaml"),
    cams: Annotated[Path, typer.Option()] = Path("data/cam"),
    metrics: Annotated[Path, typer.Option()] = Path("data/metrics/make_cam.json"),
    dataset: Annotated[Path, typer.Option()] = Path("data/dataset"),
) -> None:
    config = yaml.safe_load(params.read_text())
    data = config["data"]
    threshold = json.loads(metrics.read_text())["threshold"]
    profile = region_profile(
        SyntheticSpec(**data["synthetic"]),
        data["seed"],
        set(VOCLayout(dataset).ids(config["splits"]["score_cams"])),
        lambda image_id: load_cam(cams / f"{image_id}.npz"),
        threshold,
    )
    profile.columns = ["mean normalised CAM", f"share > threshold ({threshold})"]
    print(profile.round(3).to_markdown())


if __name__ == "__main__":
    typer.run(main)
