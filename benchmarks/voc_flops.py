"""Estimate: the compute of each network stage of configs/voc2012.yaml, and its time on a GPU.

No GPU has been lent to this project yet, so the VOC timings of docs/gpus.md are estimates from
counted FLOPs (``torch.utils.flop_counter``, multiply-add = 2 FLOPs) divided by an assumed
sustained throughput (``--tflops``, default 20 TFLOP/s: a guess for plain fp32/TF32 PyTorch
ResNet-50 training on one H100, well below its peak; replace it with a measured one).
Image sizes: the configured training crops; a typical 500 x 375 VOC image for inference.

    python benchmarks/voc_flops.py [--config configs/voc2012.yaml] [--tflops 20]
"""

from __future__ import annotations

import sys
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

TRAIN_AUG, VOC_VAL = 10_582, 1_449
VOC_IMAGE = (375, 500)


def flops(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def train_flops(model: torch.nn.Module, crop: int, section: dict) -> float:
    """Forward + backward FLOPs per training image (batch of 2: BatchNorm needs two), with the
    section's frozen parts, which need no backward pass."""
    freeze_backbone(model.backbone_parts(), section["freeze_bn"], section["freeze_through"])
    model.train()
    x = torch.randn(2, 3, crop, crop)
    return flops(lambda: model(x).sum().backward()) / 2


@torch.no_grad()
def infer_flops(run, scales: list[float], flip: bool) -> float:
    """FLOPs of one VOC-size image over ``scales`` (and flips)."""
    total = 0.0
    for scale in scales:
        size = [round(side * scale) for side in VOC_IMAGE]
        total += flops(lambda size=size: run(torch.randn(1, 3, *size)))
    return total * (2 if flip else 1)


def main(
    config: Annotated[Path, typer.Option()] = Path("configs/voc2012.yaml"),
    tflops: Annotated[float, typer.Option(help="Assumed sustained TFLOP/s.")] = 20.0,
) -> None:
    p = yaml.safe_load(config.read_text())
    cls, seg, aff = p["cls"], p["seg"], p["aff"]
    variant = {
        "ldm": {k: v for k, v in cls["ldm"].items() if k != "enabled"}
        if cls["ldm"]["enabled"]
        else None,
        "mdc": {k: v for k, v in cls["mdc"].items() if k != "enabled"}
        if cls["mdc"]["enabled"]
        else None,
    }
    classifier = Classifier(cls["backbone"], 20, False, cls["output_stride"], **variant)
    plain = Classifier(cls["backbone"], 20, False, cls["output_stride"])
    segmenter = Segmenter(seg["backbone"], 21, False, seg["output_stride"])
    affinity = AffinityNet(
        aff["backbone"], False, aff["output_stride"], aff["feature_stride"], aff["radius"]
    )
    classifier.eval()
    rows = [
        (
            "train_cls (as configured)",
            train_flops(classifier, cls["crop_size"], cls),
            TRAIN_AUG * cls["epochs"],
        ),
        (
            "train_cls (plain CAM classifier)",
            train_flops(plain, cls["crop_size"], cls),
            TRAIN_AUG * cls["epochs"],
        ),
        (
            "make_cam",
            infer_flops(classifier.eval().cam, p["cam"]["scales"], p["cam"]["flip"]),
            TRAIN_AUG,
        ),
        ("train_aff", train_flops(affinity, aff["crop_size"], aff), TRAIN_AUG * aff["epochs"]),
        ("propagate (network only)", infer_flops(affinity.eval(), [1.0], False), TRAIN_AUG),
        ("train_seg", train_flops(segmenter, seg["crop_size"], seg), TRAIN_AUG * seg["epochs"]),
        (
            "evaluate",
            infer_flops(segmenter.eval(), p["evaluate"]["scales"], p["evaluate"]["flip"]),
            VOC_VAL,
        ),
    ]
    table = pd.DataFrame(rows, columns=["stage", "GFLOP per image", "images"])
    table["GFLOP per image"] /= 1e9
    table["PFLOP"] = table["GFLOP per image"] * table["images"] / 1e6
    table[f"minutes at {tflops:g} TFLOP/s"] = table["PFLOP"] * 1e3 / tflops / 60
    print(table.to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    typer.run(main)
