"""Stage refine: pseudo-masks from the CAMs, refined by the dense CRF in parallel workers."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from destseg.crf import DenseCRF
from destseg.files import atomic_path, write_json
from destseg.metrics import foreground_precision_recall, segmentation_scores
from destseg.parallel import parallel_map
from destseg.pseudo_mask import refine_image
from destseg.voc import VOCLayout
from stages.common import (
    DatasetOption,
    MetricsOption,
    ParamsOption,
    cam_ids,
    read_params,
    read_splits,
    reported,
    require,
)
from stages.params import RefineParams

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    cams: Annotated[Path, typer.Option(help="Folder of CAM files.")] = Path("data/cam"),
    out: Annotated[Path, typer.Option(help="Folder of pseudo-masks to write.")] = Path(
        "data/pseudo_mask"
    ),
    metrics: MetricsOption = Path("data/metrics/refine.json"),
) -> None:
    """Write one palette PNG pseudo-mask per image of splits.train; score those of
    splits.score_cams against their masks."""
    p = read_params(params, "refine", RefineParams)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    require(cams, "CAM folder (run the make_cam stage)")
    ids, scored = cam_ids(layout, read_splits(params))
    num_classes = len(layout.classes)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    ignored = pixels = 0
    with atomic_path(out, directory=True) as tmp:
        job = partial(
            refine_image,
            layout=layout,
            cam_dir=cams,
            out_dir=tmp,
            bg_threshold=p.bg_threshold,
            crf=DenseCRF(**p.crf.model_dump()),
            min_confidence=p.min_confidence,
            scored=scored,
        )
        for image_confusion, image_ignored, image_pixels in parallel_map(
            job, ids, p.workers, "refine"
        ):
            confusion += image_confusion
            ignored += image_ignored
            pixels += image_pixels
    precision, recall = foreground_precision_recall(confusion)
    scores = {
        "miou": segmentation_scores(confusion)["miou"],
        "fg_precision": precision,
        "fg_recall": recall,
        "ignored_fraction": ignored / pixels,
    }
    write_json(metrics, scores)
    print(f"refine: pseudo-mask mIoU {scores['miou']:.4f}")


if __name__ == "__main__":
    app()
