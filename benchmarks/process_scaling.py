"""Benchmark: one process against several (``dist.nproc``, gloo on the CPU) for a training epoch
of train_cls and for the CRF of refine, on a reproduced pipeline (``data/``).

Each configuration runs the real stage command on the current params with its outputs in a
temporary folder. A training epoch is the difference between a 2-epoch and a 1-epoch run (so
start-up, validation and writing cancel out); the CRF is the whole refine stage (tuning sweep
and labelling, one CRF worker per process) against the same stage in one process, and against
one process with as many CRF workers. Threads: one process gets every core, N processes share
them out (``destseg.runtime.distributed.cpu_threads``).

    python benchmarks/process_scaling.py [--nproc 2]

Run it alone: another torch process on the same cores distorts every number.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

ROOT = Path(__file__).resolve().parent.parent


def run_stage(stage: str, overrides: dict[str, object], outputs: dict[str, str]) -> float:
    """Seconds the stage command takes with params.yaml changed by ``overrides`` (dotted)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        node[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        args = [x for option, name in outputs.items() for x in (option, str(Path(tmp) / name))]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", f"stages.{stage}", "--params", str(path), *args],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def main(nproc: Annotated[int, typer.Option(help="Processes to compare with one.")] = 2) -> None:
    train = {"--out": "model.pt", "--checkpoint": "ck.pt", "--live-dir": "live"}
    refine = {"--out": "masks", "--metrics": "m.json", "--confusion": "c.png"}
    rows = []

    def epoch(processes: int) -> float:
        runs = [
            run_stage("train_cls", {"dist.nproc": processes, "cls.epochs": e}, train)
            for e in (1, 2)
        ]
        return runs[1] - runs[0]

    one, many = epoch(1), epoch(nproc)
    rows.append(("train_cls epoch", one, many))
    crf_one = run_stage("refine", {"dist.nproc": 1, "refine.workers": 1}, refine)
    crf_many = run_stage("refine", {"dist.nproc": nproc, "refine.workers": 1}, refine)
    crf_workers = run_stage("refine", {"dist.nproc": 1, "refine.workers": nproc}, refine)
    rows.append(("refine (CRF), processes", crf_one, crf_many))
    rows.append(("refine (CRF), workers", crf_one, crf_workers))
    print(f"| what | 1 process (s) | {nproc} (s) | speed-up | efficiency |")
    print("|---|---|---|---|---|")
    for name, single, parallel in rows:
        speedup = single / parallel
        print(f"| {name} | {single:.1f} | {parallel:.1f} | {speedup:.2f} | {speedup / nproc:.2f} |")


if __name__ == "__main__":
    typer.run(main)
