"""Benchmark: wall time of the whole `dvc repro` with the current params.yaml, and of each stage.

Runs `dvc repro --force` once, as a user would (DVC starts once), and times each stage from the
moment DVC announces it ("Running stage '<name>'") to the next announcement or the end; DVC's
own work between stages (hashing outputs, writing dvc.lock) counts with the stage before it.
Prints a markdown table (seconds per stage, and the total wall time of the command), the
numbers quoted in docs/benchmarks.md. It reruns the whole pipeline, so it takes as long as
`dvc repro` from scratch; delete data/checkpoints/ first, or a stage resumes instead of training.

    python benchmarks/stage_times.py
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import time

import pandas as pd
import torch

ANNOUNCEMENT = re.compile(r"Running stage '(?P<stage>[\w-]+)'")


def main() -> None:
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    with subprocess.Popen(
        ["dvc", "repro", "--force"], stdout=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            match = ANNOUNCEMENT.search(line)
            if match:
                marks.append((match["stage"], time.perf_counter()))
                print(f"{match['stage']} started at {marks[-1][1] - start:.1f} s", file=sys.stderr)
    end = time.perf_counter()
    if process.returncode != 0:
        sys.exit(f"dvc repro --force failed (exit {process.returncode})")
    ends = [t for _, t in marks[1:]] + [end]
    rows = [{"stage": "(DVC start-up)", "seconds": round(marks[0][1] - start, 1)}] + [
        {"stage": stage, "seconds": round(finish - begun, 1)}
        for (stage, begun), finish in zip(marks, ends, strict=True)
    ]
    table = pd.DataFrame(rows)
    table.loc[len(table)] = {"stage": "total (dvc repro)", "seconds": round(end - start, 1)}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    cpu = platform.processor() or platform.machine()
    print(f"{cpu}, {torch.get_num_threads()} threads, {device}")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
