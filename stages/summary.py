"""Stage summary: the run's headline numbers in one file and one table, and where the figures are.

Each stage scores its own step in its own metrics file, under names that repeat (``miou`` in
make_cam.json, refine.json and evaluate.json): ``dvc exp show`` then names every column by its
file and a comparison of experiments needs more than 250 columns. This stage copies the six
numbers a reader compares first under names of their own, ``data/metrics/summary.json``:

- ``cls_map``: the classifier's mAP on splits.val (train_cls's last epoch);
- ``cam_miou``, ``cam_thr``: the CAMs' mIoU on splits.score_cams, at the CAM threshold;
- ``mask_miou``, ``mask_thr``: the pseudo-masks' mIoU on splits.score_cams, at refine's
  background threshold;
- ``seg_miou``: the segmenter's mIoU on splits.val.

A number its stage did not score is null. It reads only those metrics files and imports no
torch, so it runs in a second and is rerun only when one of the numbers changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from destseg.runtime.files import write_json
from stages.cli import InputError, MetricsOption, check_outputs, reported, require, run_stage

app = typer.Typer(add_completion=False, help=__doc__)

# (name in summary.json, what it is, the metrics file's option, the key in that file)
HEADLINE = (
    ("cls_map", "classifier mAP (splits.val)", "classifier", "val.map"),
    ("cam_miou", "CAM mIoU (splits.score_cams)", "cams", "miou"),
    ("cam_thr", "CAM threshold", "cams", "threshold"),
    ("mask_miou", "pseudo-mask mIoU (splits.score_cams)", "masks", "miou"),
    ("mask_thr", "pseudo-mask background threshold", "masks", "bg_threshold"),
    ("seg_miou", "segmenter mIoU (splits.val)", "segmenter", "miou"),
)
FIGURES = (
    "figures: data/gallery/ (per image), data/plots/ (threshold sweep, confusion matrices); "
    "every plot on one page: dvc plots show (python scripts/plots_page.py offline)"
)


def _number(metrics: dict, dotted: str, path: Path) -> float | None:
    """``metrics[dotted]`` (``val.map`` reads ``metrics["val"]["map"]``), None when absent."""
    value = metrics
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{path}: {dotted} is {value!r}, not a number")
    return value


def _read(path: Path) -> dict:
    require(path, "metrics file (run the stage that writes it)")
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a metrics JSON file ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a metrics JSON file (a {type(data).__name__})")
    return data


def headline(files: dict[str, Path]) -> dict[str, float | None]:
    """The numbers of :data:`HEADLINE` read from the metrics ``files`` (by option name)."""
    read = {option: _read(path) for option, path in files.items()}
    return {
        name: _number(read[option], key, files[option]) for name, _, option, key in HEADLINE
    }


@app.command()
@reported
def main(
    classifier: Annotated[Path, typer.Option(help="train_cls's DVCLive metrics.")] = Path(
        "data/metrics/train_cls/metrics.json"
    ),
    cams: Annotated[Path, typer.Option(help="make_cam's metrics.")] = Path(
        "data/metrics/make_cam.json"
    ),
    masks: Annotated[Path, typer.Option(help="refine's metrics.")] = Path(
        "data/metrics/refine.json"
    ),
    segmenter: Annotated[Path, typer.Option(help="evaluate's metrics.")] = Path(
        "data/metrics/evaluate.json"
    ),
    out: MetricsOption = Path("data/metrics/summary.json"),
) -> None:
    """Write the headline numbers to --out and print them as a table."""
    check_outputs("summary", files=[out])
    files = {"classifier": classifier, "cams": cams, "masks": masks, "segmenter": segmenter}
    numbers = headline(files)
    write_json(out, numbers)
    table = Table(title=f"headline numbers ({out})")
    for column in ("name", "what", "value"):
        table.add_column(column)
    for name, what, _, _ in HEADLINE:
        value = numbers[name]
        table.add_row(name, what, "not scored" if value is None else f"{value:.4f}")
    console = Console(width=100)
    console.print(table)
    console.print(FIGURES, soft_wrap=True)


if __name__ == "__main__":
    run_stage(app)
