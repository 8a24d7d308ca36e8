"""Tuning aid: pseudo-mask mIoU of every refine method over background thresholds.

For a pipeline run on a tuning dataset (the demo's data.seed 1, never the reported one), scores
on splits.score_cams: the CRF pseudo-masks against ``refine.bg_threshold``; and the propagated
CAMs, walked again with each ``propagate.normalize`` rule from the trained AffinityNet, for the
methods ``affinity`` (thresholded) and ``affinity+crf`` against ``refine.propagated_bg_threshold``.
Prints the best threshold of each (method, normalisation) and writes the whole sweep as CSV.

    python -m studies.refine_sweep [--params params.yaml] [--data data] [--out sweep.csv]
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import typer
import yaml

from destseg.affinity.propagation import propagate_cams
from destseg.affinity.walk import NORMALIZATIONS
from destseg.dataset.layout import VOCLayout
from destseg.models.affinity_net import AffinityNet
from destseg.models.model_file import load_model
from destseg.refine.crf import DenseCRF
from destseg.refine.labellers import crf_pseudo_mask, threshold_pseudo_mask
from destseg.refine.labelling import label_split

THRESHOLDS = np.round(np.arange(0.10, 0.901, 0.05), 2)


def sweep(layout, ids, cam_dir, labeller, workers) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        return [
            label_split(
                layout,
                ids,
                set(ids),
                cam_dir=cam_dir,
                out_dir=Path(out),
                labeller=partial(labeller, bg_threshold=t),
                workers=workers,
                description=f"{t}",
            )[0]["miou"]
            for t in THRESHOLDS
        ]


def main(
    params: Annotated[Path, typer.Option()] = Path("params.yaml"),
    data: Annotated[Path, typer.Option(help="The run's data folder.")] = Path("data"),
    out: Annotated[Path, typer.Option(help="CSV of the whole sweep.")] = Path("refine_sweep.csv"),
) -> None:
    config = yaml.safe_load(params.read_text())
    layout = VOCLayout(data / "dataset")
    ids = layout.ids(config["splits"]["score_cams"])
    refine, walk = config["refine"], config["propagate"]
    workers = refine["workers"]
    crf = partial(crf_pseudo_mask, crf=DenseCRF(**refine["crf"]))
    rows = {"crf (CAMs)": sweep(layout, ids, data / "cam", crf, workers)}
    model, _ = load_model(data / "train_aff" / "model.pt", AffinityNet, torch.device("cpu"))
    for normalize in NORMALIZATIONS:
        with tempfile.TemporaryDirectory() as walked:
            propagate_cams(
                model,
                layout,
                ids,
                cam_dir=data / "cam",
                out_dir=Path(walked),
                beta=walk["beta"],
                exp_times=walk["exp_times"],
                normalize=normalize,
                device=torch.device("cpu"),
            )
            rows[f"affinity, {normalize}"] = sweep(
                layout, ids, Path(walked), threshold_pseudo_mask, workers
            )
            rows[f"affinity+crf, {normalize}"] = sweep(layout, ids, Path(walked), crf, workers)
    table = pd.DataFrame(rows, index=pd.Index(THRESHOLDS, name="threshold"))
    table.to_csv(out, float_format="%.4f")
    best = pd.DataFrame({"best threshold": table.idxmax(), "pseudo-mask mIoU": table.max()})
    print(best.to_markdown(floatfmt=".4f"))


if __name__ == "__main__":
    typer.run(main)
