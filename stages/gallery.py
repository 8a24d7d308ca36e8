"""Stage gallery: one figure per sampled image, every step of the pipeline side by side.

Reads only what the earlier stages wrote (CAMs, confident regions, propagated CAMs,
pseudo-masks, the segmenter) and runs the segmenter on the few sampled images; of the params
it reads only ``gallery``, ``splits.score_cams``, ``splits.train``, ``device`` and ``amp``, so
changing the sample reruns only this stage. The images come from ``splits.score_cams``: train
images with masks, the only ones that have CAMs, pseudo-masks and a truth to show (without that
list, from ``splits.train``, drawn without the truth). Under ``val/``, the held-out images where the
segmenter does worst (``gallery.val_images`` of evaluate's per-image table): the image, its
truth, evaluate's prediction and that prediction over the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from destseg.cam.store import load_cam
from destseg.dataset.ids import check_id
from destseg.dataset.layout import VOCLayout, load_image, load_mask
from destseg.evaluation.inference import predict
from destseg.figures.gallery import (
    cam_overlay,
    figure,
    label_overlay,
    legend_for,
    mask_colours,
)
from destseg.models.model_file import load_model
from destseg.models.segmenter import Segmenter
from destseg.runtime.device import resolve_device, resolve_precision
from destseg.runtime.files import atomic_path
from stages.cli import (
    AffLabelsOption,
    CamsOption,
    DatasetOption,
    InputError,
    ParamsOption,
    PropagatedOption,
    PseudoMasksOption,
    SegmenterOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.gallery import GalleryParams
from stages.params.reader import read_params
from stages.params.run import read_run
from stages.params.splits import read_splits

app = typer.Typer(add_completion=False, help=__doc__)


def gallery_ids(p: GalleryParams, candidates: list[str]) -> list[str]:
    """``gallery.ids`` if given (each must be a candidate), else ``gallery.images`` of the
    candidates drawn with ``gallery.seed``, in list order."""
    if p.ids:
        listed = set(candidates)
        unknown = [image_id for image_id in p.ids if image_id not in listed]
        if unknown:
            raise InputError(
                f"gallery.ids: {', '.join(unknown[:3])} not among the images drawn from "
                "(splits.score_cams, or splits.train without it: those with CAMs and pseudo-masks)"
            )
        return list(p.ids)
    count = min(p.images, len(candidates))
    chosen = np.random.default_rng(p.seed).choice(len(candidates), size=count, replace=False)
    return [candidates[i] for i in sorted(chosen)]


def worst_images(per_image: Path, p: GalleryParams) -> list[tuple[str, float]]:
    """The ``gallery.val_images`` first rows of evaluate's per-image table (worst mIoU first):
    their ids and mIoU."""
    if not p.val_images:
        return []
    require(per_image, "per-image table (run the evaluate stage)")
    try:
        table = pd.read_csv(
            per_image, dtype={"image": str}, keep_default_na=False, nrows=p.val_images
        )
        rows = list(zip(table["image"], table["miou"].astype(float), strict=True))
    except (ValueError, KeyError, pd.errors.ParserError) as err:
        raise InputError(f"{per_image}: not evaluate's per-image table ({err})") from None
    return [(check_id(image_id), miou) for image_id, miou in rows]


def _cam_panels(title: str, image: np.ndarray, path: Path, classes: list[str]) -> list:
    """One heat-map panel per class of a CAM file, or none if the file does not exist (the
    propagated CAMs of a method without affinity)."""
    if not path.is_file():
        return []
    labels, cam = load_cam(path, len(classes), image.shape[:2])
    return [
        (f"{title} {classes[label]}", cam_overlay(image, cam[k])) for k, label in enumerate(labels)
    ]


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    cams: CamsOption = Path("data/cam"),
    aff_labels: AffLabelsOption = Path("data/aff_labels"),
    propagated: PropagatedOption = Path("data/propagated_cam"),
    pseudo_masks: PseudoMasksOption = Path("data/pseudo_mask"),
    model_path: SegmenterOption = Path("data/train_seg/model.pt"),
    evaluated: Annotated[Path, typer.Option(help="evaluate's predictions folder.")] = Path(
        "data/evaluate/prediction"
    ),
    per_image: Annotated[Path, typer.Option(help="evaluate's per-image table (CSV).")] = Path(
        "data/metrics/evaluate_per_image.csv"
    ),
    out: Annotated[Path, typer.Option(help="Folder of gallery PNGs to write.")] = Path(
        "data/gallery"
    ),
) -> None:
    """Write <out>/<image id>.png for the sampled images of splits.score_cams (else of
    splits.train) and
    <out>/val/<image id>.png for the gallery.val_images worst images of splits.val."""
    check_outputs("gallery", folders=[out])
    p = read_params(params, "gallery", GalleryParams)
    run = read_run(params)
    splits = read_splits(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    require(cams, "CAM folder (run the make_cam stage)")
    require(pseudo_masks, "pseudo-mask folder (run the refine stage)")
    device = resolve_device(run.device)
    model, _ = load_model(
        require(model_path, "segmenter (run the train_seg stage)"),
        Segmenter,
        device,
        len(layout.classes),
    )
    amp = resolve_precision(run.amp, device)
    amp.place(model)
    classes = layout.classes
    ids = gallery_ids(p, layout.ids(splits.score_cams or splits.train))
    worst = worst_images(per_image, p)
    if worst:
        require(evaluated, "evaluate's predictions (run the evaluate stage)")
    with atomic_path(out, directory=True, owner="gallery") as tmp:
        for image_id in ids:
            image = load_image(layout.image_path(image_id))
            masked = layout.mask_path(image_id).is_file()  # not all of splits.train are
            truth = load_mask(layout.mask_path(image_id)) if masked else None
            pseudo = load_mask(require(pseudo_masks / f"{image_id}.png", "pseudo-mask"))
            with amp.autocast():
                prediction = predict(model, layout.image_path(image_id), [1.0], False, device)
            panels = [("image", image)]
            panels += _cam_panels("CAM", image, require(cams / f"{image_id}.npz", "CAM"), classes)
            regions = aff_labels / f"{image_id}.png"
            shown = [pseudo, prediction] + ([truth] if masked else [])
            if regions.is_file():
                confident = load_mask(regions)
                panels.append(("confident", mask_colours(confident)))
                shown.append(confident)
            panels += _cam_panels("walk", image, propagated / f"{image_id}.npz", classes)
            panels += [
                ("pseudo-mask", mask_colours(pseudo)),
                ("segmenter", mask_colours(prediction)),
            ]
            if masked:
                panels.append(("truth", mask_colours(truth)))
            legend = legend_for(np.unique(np.concatenate([m.ravel() for m in shown])), classes)
            figure(panels, legend, p.size).save(tmp / f"{image_id}.png")
        if worst:
            (tmp / "val").mkdir()
        for image_id, miou in worst:
            image = load_image(layout.image_path(image_id))
            truth = load_mask(layout.mask_path(image_id))
            prediction = load_mask(require(evaluated / f"{image_id}.png", "prediction"))
            panels = [
                (f"val mIoU {miou:.2f}", image),
                ("truth", mask_colours(truth)),
                ("segmenter", mask_colours(prediction)),
                ("overlay", label_overlay(image, prediction)),
            ]
            shown = np.unique(np.concatenate([truth.ravel(), prediction.ravel()]))
            figure(panels, legend_for(shown, classes), p.size).save(tmp / "val" / f"{image_id}.png")
    held_out = f" and {len(worst)} of the worst val images in {out / 'val'}" if worst else ""
    print(f"gallery: {len(ids)} figures in {out}{held_out}")


if __name__ == "__main__":
    run_stage(app)
