"""Predict a folder of test images and pack them as the VOC evaluation server expects.

The PASCAL VOC 2012 test set has no public masks: its score comes from uploading predictions to
the evaluation server (host.robots.ox.ac.uk, an account is needed). The server wants a tar of

    results/VOC2012/Segmentation/<competition>_test_cls/<image id>.png   (VOC palette PNGs)

with ``comp6`` for methods trained on data beyond VOC 2012 (ImageNet weights, SBD masks: the
WSSS papers' setting) and ``comp5`` for VOC 2012 data only. Uses the segmenter of the pipeline
and the ``evaluate`` params (scales, flip), ``device`` and ``amp`` of params.yaml, as the
evaluate stage does, through the code of ``destseg predict`` (its label maps, without
overlays):

    python scripts/export_voc_test.py --images VOC2012_test/VOCdevkit/VOC2012/JPEGImages \\
        --list VOC2012_test/VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt

writes data/voc_test/results/... and data/voc_test/results.tar.gz (upload that file).
"""

from __future__ import annotations

import sys
import tarfile
import warnings
from pathlib import Path
from typing import Annotated, Literal

import typer

# the checkout's own library and stages, whichever copy of destseg is installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.app.predict import label_maps
from destseg.dataset.ids import read_id_list
from destseg.dataset.layout import save_mask
from destseg.models.model_file import load_model
from destseg.models.segmenter import Segmenter
from destseg.runtime.device import resolve_device, resolve_precision
from destseg.runtime.files import atomic_path
from stages.cli import InputError, ParamsOption, check_outputs, reported, require
from stages.params.evaluate import EvaluateParams
from stages.params.reader import read_params
from stages.params.run import read_run

app = typer.Typer(add_completion=False, help=__doc__)


def image_files(images: Path, id_list: Path | None) -> list[Path]:
    """The JPEG files to predict: those named in ``id_list``, or every .jpg of ``images`` (the
    server's test set is JPEG; other files are named in one warning, never skipped silently:
    destseg predict segments images of any format)."""
    require(images, "test image folder")
    if id_list is None:
        paths = sorted(images.glob("*.jpg"))
        others = sorted(p.name for p in images.iterdir() if p.is_file() and p.suffix != ".jpg")
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            warnings.warn(
                f"{images}: {len(others)} files that are not .jpg are left out ({shown}); "
                "destseg predict takes any image format",
                stacklevel=2,
            )
        if not paths:
            raise InputError(f"{images}: no .jpg images")
        return paths
    paths = [images / f"{i}.jpg" for i in read_id_list(require(id_list, "id list"))]
    if not paths:
        raise InputError(f"{id_list}: the list names no image")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image of {id_list} not found ({len(missing)} missing)")
    return paths


@app.command()
@reported
def main(
    images: Annotated[Path, typer.Option(help="Folder of test images (<id>.jpg).")],
    id_list: Annotated[
        Path | None, typer.Option("--list", help="Ids to predict (default: every .jpg).")
    ] = None,
    params: ParamsOption = Path("params.yaml"),
    model_path: Annotated[Path, typer.Option("--model", help="Segmenter model file.")] = Path(
        "data/train_seg/model.pt"
    ),
    out: Annotated[Path, typer.Option(help="Folder for results/ and results.tar.gz.")] = Path(
        "data/voc_test"
    ),
    competition: Annotated[
        Literal["comp5", "comp6"], typer.Option(help="comp6: trained with more than VOC data.")
    ] = "comp6",
) -> None:
    """Write the predictions in the server's layout, then the archive to upload."""
    results, archive = out / "results", out / "results.tar.gz"
    check_outputs("export_voc_test", folders=[results], files=[archive])
    p = read_params(params, "evaluate", EvaluateParams)
    run = read_run(params)
    device = resolve_device(run.device)
    paths = image_files(images, id_list)
    model, _ = load_model(model_path, Segmenter, device)
    amp = resolve_precision(run.amp, device)
    amp.place(model)
    with atomic_path(results, directory=True, owner="export_voc_test") as tmp:
        folder = tmp / "VOC2012" / "Segmentation" / f"{competition}_test_cls"
        folder.mkdir(parents=True)
        for path, _, labels in label_maps(model, paths, p.scales, p.flip, None, amp):
            save_mask(folder / f"{path.stem}.png", labels)
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(results, arcname="results")
    print(f"export: {len(paths)} predictions -> {archive}")


if __name__ == "__main__":
    app()
