"""Estimate: the compute of each network stage of a real-data configuration (configs/voc2012.yaml,
its positive controls voc2012-recam.yaml and voc2012-puzzle.yaml, or configs/coco2014.yaml), and
its time on a GPU.

No GPU has been lent to this project yet, so the VOC timings of docs/gpus.md are estimates from
counted FLOPs (``torch.utils.flop_counter``, multiply-add = 2 FLOPs) divided by an assumed
sustained throughput (``--tflops``, default 20 TFLOP/s: a guess for plain fp32/TF32 PyTorch
ResNet-50 training on one H100, well below its peak; replace it with a measured one).
Image sizes: the configured training crops; a typical image for inference (VOC 500 x 375, COCO
640 x 480, its most common size; COCO's mean is about 578 x 484, so its rows are a little high).

    python benchmarks/flops.py [--dataset voc2012|voc2012-recam|voc2012-puzzle|coco2014]
        [--tflops 20]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
import typer
import yaml
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.models.affinity_net import AffinityNet
from destseg.models.classifier import Classifier
from destseg.models.freezing import freeze_backbone
from destseg.models.segmenter import Segmenter


@dataclass(frozen=True)
class Dataset:
    """What the estimate needs of a dataset: its configuration, list sizes, a typical image
    (height, width) and its number of foreground classes."""

    config: Path
    train: int
    val: int
    image: tuple[int, int]
    classes: int


VOC = (10_582, 1_449, (375, 500), 20)  # train_aug, val, a typical image, classes
DATASETS = {
    "voc2012": Dataset(Path("configs/voc2012.yaml"), *VOC),
    "voc2012-recam": Dataset(Path("configs/voc2012-recam.yaml"), *VOC),
    "voc2012-puzzle": Dataset(Path("configs/voc2012-puzzle.yaml"), *VOC),
    "coco2014": Dataset(Path("configs/coco2014.yaml"), 82_081, 40_137, (480, 640), 80),
}


def flops(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def train_flops(model: torch.nn.Module, crop: int, section: dict, **outputs) -> float:
    """Forward + backward FLOPs per training image (batch of 2: BatchNorm needs two), with the
    section's frozen parts, which need no backward pass; ``outputs``: what the loss asks of the
    classifier besides its logits (Puzzle-CAM's tiles, ReCAM's scores)."""
    freeze_backbone(model.backbone_parts(), section["freeze_bn"], section["freeze_through"])
    model.train()
    x = torch.randn(2, 3, crop, crop)

    def step() -> None:
        out = model(x, **outputs)
        terms = out.values() if isinstance(out, dict) else [out]
        sum(t.sum() for t in terms).backward()

    return flops(step) / 2


@torch.no_grad()
def infer_flops(run, image: tuple[int, int], scales: list[float], flip: bool) -> float:
    """FLOPs of one ``image``-size image over ``scales`` (and flips)."""
    total = 0.0
    for scale in scales:
        size = [round(side * scale) for side in image]
        total += flops(lambda size=size: run(torch.randn(1, 3, *size)))
    return total * (2 if flip else 1)


def recam_rows(p: dict, d: Dataset, variant: dict) -> list[tuple]:
    """ReCAM's second phase, when the configuration has it: the classifier with its head."""
    cls, recam = p["cls"], p["recam"]
    if not recam["enabled"]:
        return []
    model = Classifier(
        cls["backbone"], d.classes, False, cls["output_stride"], **variant, recam=True
    )
    step = train_flops(model, cls["crop_size"], cls, recam=True)
    return [("train_recam", step, d.train * recam["epochs"])]


def main(
    dataset: Annotated[
        str, typer.Option(help="voc2012, voc2012-recam, voc2012-puzzle or coco2014.")
    ] = "voc2012",
    tflops: Annotated[float, typer.Option(help="Assumed sustained TFLOP/s.")] = 20.0,
) -> None:
    if dataset not in DATASETS:
        raise typer.BadParameter(f"{dataset!r}: choose one of {', '.join(DATASETS)}")
    d = DATASETS[dataset]
    p = yaml.safe_load(d.config.read_text())
    cls, seg, aff = p["cls"], p["seg"], p["aff"]
    variant = {
        "ldm": {k: v for k, v in cls["ldm"].items() if k != "enabled"}
        if cls["ldm"]["enabled"]
        else None,
        "mdc": {k: v for k, v in cls["mdc"].items() if k != "enabled"}
        if cls["mdc"]["enabled"]
        else None,
    }
    classifier = Classifier(cls["backbone"], d.classes, False, cls["output_stride"], **variant)
    puzzle = {"tiles": cls["puzzle"]["tiles"]} if cls["puzzle"]["enabled"] else {}
    plain = Classifier(cls["backbone"], d.classes, False, cls["output_stride"])
    segmenter = Segmenter(seg["backbone"], d.classes + 1, False, seg["output_stride"])
    affinity = AffinityNet(
        aff["backbone"], False, aff["output_stride"], aff["feature_stride"], aff["radius"]
    )
    classifier.eval()
    rows = [
        (
            "train_cls (as configured)",
            train_flops(classifier, cls["crop_size"], cls, **puzzle),
            d.train * cls["epochs"],
        ),
        (
            "train_cls (plain CAM classifier)",
            train_flops(plain, cls["crop_size"], cls),
            d.train * cls["epochs"],
        ),
        (
            "make_cam",
            infer_flops(classifier.eval().cam, d.image, p["cam"]["scales"], p["cam"]["flip"]),
            d.train,
        ),
        *recam_rows(p, d, variant),
        ("train_aff", train_flops(affinity, aff["crop_size"], aff), d.train * aff["epochs"]),
        ("propagate (network only)", infer_flops(affinity.eval(), d.image, [1.0], False), d.train),
        ("train_seg", train_flops(segmenter, seg["crop_size"], seg), d.train * seg["epochs"]),
        (
            "evaluate",
            infer_flops(segmenter.eval(), d.image, p["evaluate"]["scales"], p["evaluate"]["flip"]),
            d.val,
        ),
    ]
    table = pd.DataFrame(rows, columns=["stage", "GFLOP per image", "images"])
    table["GFLOP per image"] /= 1e9
    table["PFLOP"] = table["GFLOP per image"] * table["images"] / 1e6
    table[f"minutes at {tflops:g} TFLOP/s"] = table["PFLOP"] * 1e3 / tflops / 60
    print(table.to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    typer.run(main)
