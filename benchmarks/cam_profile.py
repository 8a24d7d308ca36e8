"""Diagnostic: where the CAM of an object's class is strong, part versus body versus background.

Regenerates the part maps of the synthetic train images from params.yaml (the dataset does not
store them) and averages the stored normalised CAM (data/cam) of each labelled class over the
part pixels of that class's objects, over the rest of those objects, and over the background.
A classifier that relies on the discriminative parts has a CAM much stronger on the parts than
on the bodies: the gap that weakly supervised methods try to close.

    python benchmarks/cam_profile.py [--params params.yaml] [--cams data/cam]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.cam_store import load_cam
from destseg.synthetic import SyntheticSpec, generate


def main(
    params: Annotated[Path, typer.Option()] = Path("params.yaml"),
    cams: Annotated[Path, typer.Option()] = Path("data/cam"),
) -> None:
    data = yaml.safe_load(params.read_text())["data"]
    spec = SyntheticSpec(**data["synthetic"])
    rows = []
    for split, image_id, _, mask, parts in generate(spec, data["seed"]):
        if split != "train":
            continue
        classes, cam = load_cam(cams / f"{image_id}.npz")
        for k, cls in enumerate(classes):
            objects = mask == cls
            rows.append(
                {
                    "part": cam[k][objects & parts].mean() if (objects & parts).any() else np.nan,
                    "body": cam[k][objects & ~parts].mean(),
                    "background": cam[k][mask == 0].mean(),
                }
            )
    table = pd.DataFrame(rows).mean().round(3).rename("mean normalised CAM").to_frame()
    print(table.to_markdown())


if __name__ == "__main__":
    typer.run(main)
