"""Benchmark: training cost of each classifier variant relative to the plain CAM baseline.

Times forward + backward + optimizer step of the classifier on random batches shaped like the
demo configuration (ResNet-18, output stride 16, batch 16, 128 px; the LDM and MDC settings of
params.yaml), for the baseline, +LDM, +MDC and both, and prints a markdown table.

    python benchmarks/variant_cost.py [--params params.yaml] [--steps 15]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
import torch.nn.functional as F
import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.models.classifier import Classifier


def main(
    params: Annotated[Path, typer.Option()] = Path("params.yaml"),
    steps: Annotated[int, typer.Option()] = 15,
) -> None:
    cls = yaml.safe_load(params.read_text())["cls"]
    ldm = {k: v for k, v in cls["ldm"].items() if k != "enabled"}
    mdc = {k: v for k, v in cls["mdc"].items() if k != "enabled"}
    variants = {"baseline": (None, None), "+LDM": (ldm, None), "+MDC": (None, mdc)}
    variants["+LDM +MDC"] = (ldm, mdc)
    size, batch = cls["crop_size"], cls["batch_size"]
    x = torch.randn(batch, 3, size, size)
    target = (torch.rand(batch, 6) < 0.3).float()
    rows = []
    for name, (ldm_cfg, mdc_cfg) in variants.items():
        torch.manual_seed(0)
        model = Classifier(cls["backbone"], 6, False, cls["output_stride"], ldm_cfg, mdc_cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        for step in range(steps + 2):  # two warm-up steps
            if step == 2:
                start = time.perf_counter()
            loss = F.multilabel_soft_margin_loss(model(x), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = (time.perf_counter() - start) / steps
        rows.append(
            {"variant": name, "s/step": round(seconds, 3), "img/s": round(batch / seconds, 1)}
        )
    table = pd.DataFrame(rows)
    table["relative"] = (table["s/step"] / table["s/step"].iloc[0]).round(2)
    print(f"{cls['backbone']}, batch {batch}, {size} px, {torch.get_num_threads()} threads")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    typer.run(main)
