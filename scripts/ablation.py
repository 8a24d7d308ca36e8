"""The destruction-learning ablation: baseline, +LDM, +MDC and both, over several seeds.

Queue the experiments (DVC experiments with -S overrides, one per variant and seed), run them,
then collect their metrics into a table (mean and standard deviation per variant):

    python scripts/ablation.py queue --seeds 0 --seeds 1 --seeds 2
    dvc queue start            # runs them one after another; `dvc queue status` to follow
    python scripts/ablation.py collect --out data/ablation

`collect` reads every finished experiment named `<variant>-seed<N>` from `dvc exp show`
(experiments of the current commit: collect on the commit they were queued from) and writes
`<out>.csv` (one row per variant), `<out>.md` (the same as a markdown table, mean ± standard
deviation over seeds) and `<out>_runs.csv` (one row per experiment).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

VARIANTS = {
    "baseline": {"cls.ldm.enabled": "false", "cls.mdc.enabled": "false"},
    "ldm": {"cls.ldm.enabled": "true", "cls.mdc.enabled": "false"},
    "mdc": {"cls.ldm.enabled": "false", "cls.mdc.enabled": "true"},
    "ldm-mdc": {"cls.ldm.enabled": "true", "cls.mdc.enabled": "true"},
}

# (column in the table, metrics file, key in that file)
METRICS = [
    ("classifier mAP", "data/metrics/train_cls/metrics.json", "val.map"),
    ("CAM mIoU", "data/metrics/make_cam.json", "miou"),
    ("CAM object recall", "data/metrics/make_cam.json", "fg_recall"),
    ("pseudo-mask mIoU", "data/metrics/refine.json", "miou"),
    ("segmentation mIoU", "data/metrics/evaluate.json", "miou"),
]

# `dvc exp show` states of experiments whose metrics are their own (None: run outside the queue)
FINISHED = (None, "Success")
NAME = re.compile(r"^(?P<variant>[a-z-]+)-seed(?P<seed>\d+)$")

app = typer.Typer(add_completion=False, help=__doc__)


def queue_commands(seeds: list[int]) -> list[list[str]]:
    """The `dvc exp run --queue` command of every variant and seed."""
    commands = []
    for variant, overrides in VARIANTS.items():
        for seed in seeds:
            command = ["dvc", "exp", "run", "--queue", "-n", f"{variant}-seed{seed}"]
            for key, value in {**overrides, "seed": str(seed)}.items():
                command += ["-S", f"{key}={value}"]
            commands.append(command)
    return commands


def _metric(row: dict, file: str, key: str) -> float:
    """A metric from a `dvc exp show` row: DVC prefixes a key with its file only when the same
    key exists in several metrics files."""
    value = row.get(f"{file}:{key}", row.get(key))
    return float(value) if isinstance(value, int | float) else float("nan")


def runs(rows: list[dict]) -> pd.DataFrame:
    """One row per finished ablation experiment (variant, seed, metrics) from `dvc exp show`."""
    records = []
    for row in rows:
        match = NAME.match(str(row.get("Experiment") or ""))
        if match is None or match["variant"] not in VARIANTS:
            continue
        if row.get("State") not in FINISHED:  # a queued or running row shows stale metrics
            continue
        record = {"variant": match["variant"], "seed": int(match["seed"])}
        record |= {column: _metric(row, file, key) for column, file, key in METRICS}
        records.append(record)
    if not records:
        raise ValueError("no experiment named <variant>-seed<N> found; queue and run them first")
    frame = pd.DataFrame(records)
    frame["order"] = frame["variant"].map(list(VARIANTS).index)
    return frame.sort_values(["order", "seed"]).drop(columns="order").reset_index(drop=True)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of every metric per variant, from :func:`runs`."""
    grouped = frame.groupby("variant", sort=False)
    table = grouped[[column for column, _, _ in METRICS]].agg(["mean", "std"])
    table.insert(0, ("seeds", ""), grouped["seed"].nunique())
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """Each metric as `mean ± std` (the mean alone for a single seed), one row per variant."""
    shown = pd.DataFrame(index=table.index)
    shown["seeds"] = table[("seeds", "")]
    for column, _, _ in METRICS:
        mean, std = table[(column, "mean")], table[(column, "std")]
        shown[column] = [
            f"{m:.3f}" if pd.isna(s) else f"{m:.3f} ± {s:.3f}"
            for m, s in zip(mean, std, strict=True)
        ]
    return shown.to_markdown()


@app.command()
def queue(seeds: Annotated[list[int], typer.Option(help="Training seeds.")] = [0, 1, 2]):  # noqa: B006
    """Queue one DVC experiment per variant and seed."""
    for command in queue_commands(seeds):
        subprocess.run(command, check=True)


@app.command()
def collect(
    out: Annotated[Path, typer.Option(help="Output path without suffix.")] = Path("data/ablation"),
):
    """Collect the experiments' metrics into <out>.csv and <out>.md (per variant) and
    <out>_runs.csv (per experiment)."""
    import dvc.api

    frame = runs(dvc.api.exp_show())
    table = summarize(frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    table.to_csv(out.with_suffix(".csv"))
    markdown = to_markdown(table)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    app()
