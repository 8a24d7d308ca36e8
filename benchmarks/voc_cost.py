"""Benchmark: what each stage of configs/voc2012.yaml costs per image, measured on this machine.

Runs the paper's configuration, as the VOC-shaped end-to-end test does (tests/test_e2e_voc.py:
VOC-layout archives served on 127.0.0.1, six images of VOC's sizes (4 in train_aug, 2 in val),
21 classes; only the sizes,
``pretrained`` and the freezing that needs pretrained weights overridden), one stage at a time,
and records each stage's wall time, images processed and peak resident memory (the stage's
process or its largest worker), next to the FLOPs per image that benchmarks/flops.py
counts for the network stages. Prints a markdown table.

    python benchmarks/voc_cost.py [--epochs 1]
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
import yaml

# the VOC-shaped data and the helpers of the end-to-end test
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from http_server import LocalServer, Served
from pipeline_repo import run, set_dotted
from test_e2e_voc import CONFIG, voc_overrides
from voc_archives import VOC_SIZES_SIX, voc_shaped_archives

ROOT = Path(__file__).resolve().parent.parent

# Runs one stage in-process and writes its peak memory (MiB): its own (VmHWM, which starts
# afresh at exec, unlike ru_maxrss) and its largest worker's (DataLoader or CRF processes).
LAUNCHER = """
import json, resource, runpy, sys
out, module = sys.argv.pop(1), sys.argv.pop(1)
sys.argv[0] = module
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    if exit.code:
        raise
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak = {"self": int(status["VmHWM"].split()[0]) / 1024,
        "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
open(out, "w").write(json.dumps(peak))
"""


def stage_commands(repo: Path) -> dict[str, list[str]]:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {name: shlex.split(spec["cmd"]) for name, spec in stages.items()}


def images_processed(name: str, params: dict, counts: dict[str, int]) -> int:
    """How many images a stage handles (training: images x epochs; prepare: listed images)."""
    train, val = counts["train_aug"], counts["val"]
    section = {"train_cls": "cls", "train_aff": "aff", "train_seg": "seg"}.get(name)
    if section:
        return train * params[section]["epochs"]
    return {"prepare": train + val + counts["train"], "evaluate": val}.get(name, train)


def main(epochs: Annotated[int, typer.Option(help="Epochs of each training.")] = 1) -> None:
    archives = voc_shaped_archives(VOC_SIZES_SIX)
    rows = []
    with (
        tempfile.TemporaryDirectory() as folder,
        LocalServer(Served(files={"/voc.tar": archives.voc, "/sbd.tgz": archives.sbd})) as url,
    ):
        repo = Path(folder)
        for name in ("src", "stages"):
            subprocess.run(["cp", "-r", str(ROOT / name), str(repo / name)], check=True)
        params = yaml.safe_load(CONFIG.read_text())
        overrides = voc_overrides(url, str(repo / "downloads"), archives.voc, archives.sbd)
        for section in ("cls", "aff", "seg"):
            overrides[f"{section}.epochs"] = epochs
        for dotted, value in overrides.items():
            set_dotted(params, dotted, value)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (repo / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
        counts = {}
        for name, command in stage_commands(repo).items():
            assert command[:3] == ["python", "-m", f"stages.{name}"], command
            peak_file = repo / f"{name}.peak.json"
            start = time.perf_counter()
            run([sys.executable, "-c", LAUNCHER, str(peak_file), *command[2:]], repo, None)
            seconds = time.perf_counter() - start
            if name == "prepare":
                lists = repo / "data/dataset/ImageSets/Segmentation"
                counts = {p.stem: len(p.read_text().split()) for p in lists.glob("*.txt")}
            peak = json.loads(peak_file.read_text())
            images = images_processed(name, params, counts)
            rows.append(
                {
                    "stage": name,
                    "images": images,
                    "seconds": seconds,
                    "s per image": seconds / images,
                    "peak MiB": max(peak.values()),
                }
            )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=("", "g", ".1f", ".2f", ".0f")))


if __name__ == "__main__":
    typer.run(main)
