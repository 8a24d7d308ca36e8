"""Benchmark: wall time of each pipeline stage with the current params.yaml.

Runs `dvc repro --force --single-item <stage>` for every stage in DAG order and prints a
markdown table (seconds per stage and in total), the numbers quoted in README.md. It reruns
the whole pipeline, so it takes as long as `dvc repro` from scratch.

    python benchmarks/stage_times.py
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

STAGES = list(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])  # written in DAG order


def main() -> None:
    rows = []
    for stage in STAGES:
        start = time.perf_counter()
        subprocess.run(
            ["dvc", "repro", "--force", "--single-item", stage],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows.append({"stage": stage, "seconds": round(time.perf_counter() - start, 1)})
        print(f"{stage}: {rows[-1]['seconds']} s", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    table.loc[len(table)] = {"stage": "total", "seconds": round(table["seconds"].sum(), 1)}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, {torch.get_num_threads()} threads, {device}")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
