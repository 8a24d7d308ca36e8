"""Stage refine: the pseudo-masks segmentation trains on, by the method of refine.method.

* ``crf``: the CAMs, background at ``bg_threshold``, refined by the dense CRF;
* ``affinity``: the propagated CAMs, background at ``propagated_bg_threshold``;
* ``affinity+crf``: the propagated CAMs refined by the dense CRF.

Whatever the method, the metrics have the same names, so ``dvc metrics diff`` compares them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from destseg.crf import DenseCRF
from destseg.files import atomic_path, write_json
from destseg.pseudo_mask import Labeller, crf_pseudo_mask, label_split, threshold_pseudo_mask
from destseg.voc import VOCLayout
from stages.common import (
    DatasetOption,
    MetricsOption,
    ParamsOption,
    StageError,
    cam_ids,
    read_params,
    read_splits,
    reported,
    require,
)
from stages.params import AFFINITY_METHODS, RefineParams

app = typer.Typer(add_completion=False, help=__doc__)


def labeller(p: RefineParams) -> Labeller:
    """The pseudo-mask labeller of ``p.method``."""
    crf = DenseCRF(**p.crf.model_dump())
    if p.method == "crf":
        return partial(
            crf_pseudo_mask, bg_threshold=p.bg_threshold, crf=crf, min_confidence=p.min_confidence
        )
    if p.method == "affinity":
        return partial(threshold_pseudo_mask, bg_threshold=p.propagated_bg_threshold)
    return partial(
        crf_pseudo_mask,
        bg_threshold=p.propagated_bg_threshold,
        crf=crf,
        min_confidence=p.min_confidence,
    )


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    cams: Annotated[Path, typer.Option(help="Folder of CAM files.")] = Path("data/cam"),
    propagated: Annotated[Path, typer.Option(help="Folder of propagated CAM files.")] = Path(
        "data/propagated_cam"
    ),
    out: Annotated[Path, typer.Option(help="Folder of pseudo-masks to write.")] = Path(
        "data/pseudo_mask"
    ),
    metrics: MetricsOption = Path("data/metrics/refine.json"),
) -> None:
    """Write one palette PNG pseudo-mask per image of splits.train; score those of
    splits.score_cams against their masks."""
    p = read_params(params, "refine", RefineParams)
    splits = read_splits(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    ids, scored = cam_ids(layout, splits)
    if p.method in AFFINITY_METHODS:
        source = require(propagated, "propagated CAM folder (run the propagate stage)")
        missing = [i for i in ids if not (source / f"{i}.npz").is_file()]
        if missing:
            raise StageError(
                f"{source}: no propagated CAMs for {len(missing)} of {len(ids)} images (e.g. "
                f"{missing[0]}); run `dvc repro` so that aff_labels, train_aff and propagate "
                f"run for refine.method {p.method}"
            )
    else:
        source = require(cams, "CAM folder (run the make_cam stage)")
    with atomic_path(out, directory=True) as tmp:
        scores = label_split(layout, ids, scored, source, tmp, labeller(p), p.workers, "refine")
    write_json(metrics, scores)
    print(f"refine ({p.method}): pseudo-mask mIoU {scores['miou']:.4f}")


if __name__ == "__main__":
    app()
