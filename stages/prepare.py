"""Stage prepare: build the dataset in VOC layout from the source ``data.source`` names.

- ``synthetic``: render the embedded dataset (runs anywhere, no download);
- ``voc2012``: download (or reuse) PASCAL VOC 2012 and SBD, build train_aug, train and val;
- ``coco2014``: download (or reuse) MS COCO 2014, draw the semantic masks, build train and val;
- ``folder``: validate a VOC-layout folder of the user's and copy it in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.download import Archive
from destseg.dataset.sources.folder import import_folder
from destseg.dataset.sources.synthetic import SyntheticSpec, write_dataset
from destseg.runtime.files import atomic_path
from stages.cli import InputError, ParamsOption, check_outputs, reported, run_stage
from stages.params.data import DataParams
from stages.params.reader import read_params

app = typer.Typer(add_completion=False, help=__doc__)


def build(data: DataParams, out: VOCLayout) -> dict[str, int]:
    """Write the dataset ``data`` describes into ``out``; return the size of every list."""
    if data.source == "synthetic":
        return write_dataset(out, SyntheticSpec(**data.synthetic.model_dump()), data.seed)
    if data.source == "folder":
        if not data.folder.root:
            raise InputError("params: data.folder.root: set it to the dataset folder")
        tags = Path(data.folder.tags) if data.folder.tags else None
        return import_folder(Path(data.folder.root), data.folder.classes, out, tags=tags)
    if data.source == "coco2014":
        from destseg.dataset.sources import coco2014  # pycocotools loads only for this source

        c = data.coco2014
        archives = {
            key: Archive(
                getattr(c, f"{key}_url"),
                official.filename,
                getattr(c, f"{key}_md5"),
                md5_param=f"data.coco2014.{key}_md5",
            )
            for key, official in (
                ("train", coco2014.TRAIN_ARCHIVE),
                ("val", coco2014.VAL_ARCHIVE),
                ("annotations", coco2014.ANNOTATIONS_ARCHIVE),
            )
        }
        official = [a.md5 for a in archives.values()] == [
            coco2014.TRAIN_ARCHIVE.md5,
            coco2014.VAL_ARCHIVE.md5,
            coco2014.ANNOTATIONS_ARCHIVE.md5,
        ]
        return coco2014.build(archives, Path(c.download_dir), out, official)
    from destseg.dataset.sources import voc2012  # torchvision and scipy load only for this source

    v = data.voc2012
    voc = Archive(v.voc_url, voc2012.VOC_ARCHIVE.filename, v.voc_md5, "data.voc2012.voc_md5")
    sbd = Archive(v.sbd_url, voc2012.SBD_ARCHIVE.filename, v.sbd_md5, "data.voc2012.sbd_md5")
    official = (voc.md5, sbd.md5) == (voc2012.VOC_ARCHIVE.md5, voc2012.SBD_ARCHIVE.md5)
    expected = voc2012.TRAIN_AUG_SIZE if official else None
    return voc2012.build(voc, sbd, Path(v.download_dir), out, expected)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")] = Path("data/dataset"),
) -> None:
    """Build the dataset: JPEGImages, SegmentationClass, image lists, classes and labels."""
    data = read_params(params, "data", DataParams)
    if data.source == "folder" and data.folder.root:
        root, target = Path(data.folder.root).resolve(), out.resolve()
        if root.is_relative_to(target) or target.is_relative_to(root):
            # replacing the output would delete the user's folder (or write into it)
            raise InputError(
                f"data.folder.root ({data.folder.root}) and --out ({out}) overlap: the dataset "
                "is copied into --out, which is replaced as a whole; choose an --out outside it"
            )
    check_outputs("prepare", folders=[out])
    with atomic_path(out, directory=True, owner="prepare") as tmp:
        counts = build(data, VOCLayout(tmp))
        classes = len(VOCLayout(tmp).classes) - 1
    print(f"prepare ({data.source}): {counts} images, {classes} classes -> {out}")


if __name__ == "__main__":
    run_stage(app)
