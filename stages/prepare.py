"""Stage prepare: build the dataset in VOC layout (``data.source: synthetic``: the embedded one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import print as rprint

from destseg.files import atomic_path
from destseg.synthetic import SyntheticSpec, write_dataset
from destseg.voc import VOCLayout
from stages.common import ParamsOption, read_params, reported
from stages.params import DataParams

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")] = Path("data/dataset"),
) -> None:
    """Generate the synthetic dataset (JPEGImages, SegmentationClass, split lists, labels)."""
    data = read_params(params, "data", DataParams)
    spec = SyntheticSpec(**data.synthetic.model_dump())
    with atomic_path(out, directory=True) as tmp:
        counts = write_dataset(VOCLayout(tmp), spec, data.seed)
    rprint(f"prepare: {counts} images, {spec.num_classes} classes -> {out}")


if __name__ == "__main__":
    app()
