"""The premise check of a data regime, on the plain classifier only: does the evidence it relies
on die under the LDM's shuffle, does its CAM show partial activation, and do the bodies carry
evidence that survives the shuffle?

Destruction learning can only help where (a) the evidence a plain classifier uses is destroyed
by region confusion at the grid and k the LDM uses, and (b) that classifier's CAM covers the
discriminative parts and misses the bodies. (c) The bodies must carry class evidence that
survives the shuffle, or the destructed branch has nothing to learn. This trains, in a scratch
folder, through the stages' own commands:

1. the plain classifier (``cls.ldm`` and ``cls.mdc`` off) on the regime, then its CAMs;
2. the same classifier on the same images with the parts painted out (``part_saliency: 0``);

and reports (a) the val mAP of each on intact and on region-confused val images (grid and k of
``cls.ldm``, shuffle seeded), and (b) the CAM profile of the first at its threshold chosen on
``splits.tune`` (part, body, background: mean CAM and share above the threshold), on the images
of ``splits.score_cams``. Criteria fixed before any destruction variant is trained on a regime:
(a) confused mAP at least 15 points below intact; (b) part >= 90 %, body <= 60 %,
background <= 10 % above the threshold.

    python -m studies.premise_check [--params params.yaml] [--set data.synthetic.x=y ...]
        [--seed 0] [--work /tmp/premise]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
import typer
import yaml

from destseg.cam.profile import region_profile
from destseg.cam.store import load_cam
from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.synthetic import SyntheticSpec
from destseg.dataset.torch_dataset import VOCDataset
from destseg.models.classifier import Classifier
from destseg.models.model_file import load_model
from studies.branch_profile import branch_map

ROOT = Path(__file__).resolve().parent.parent  # the repository: its stages run here


def with_overrides(params: dict, overrides: list[str]) -> dict:
    """``params`` with ``section.key=value`` overrides (values read as YAML)."""
    for item in overrides:
        dotted, _, value = item.partition("=")
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        if key not in node:
            raise typer.BadParameter(f"{dotted}: no such key in the params")
        node[key] = yaml.safe_load(value)
    return params


def stage(name: str, params: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", f"stages.{name}", "--params", str(params), *args],
        cwd=ROOT,
        check=True,
    )


def train_plain(params: dict, folder: Path) -> tuple[Path, Path, Path]:
    """prepare and train_cls of ``params`` in ``folder``: (params file, dataset, model)."""
    folder.mkdir(parents=True, exist_ok=True)
    path, dataset, model = folder / "params.yaml", folder / "dataset", folder / "model.pt"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    stage("prepare", path, "--out", str(dataset))
    stage(
        "train_cls",
        path,
        *("--dataset", str(dataset), "--out", str(model)),
        *("--checkpoint", str(folder / "checkpoint.pt"), "--live-dir", str(folder / "live")),
    )
    return path, dataset, model


def maps(params: dict, dataset: Path, model_path: Path) -> dict[str, float]:
    """val mAP on intact and on region-confused images (the LDM's grid and k, seeded)."""
    layout = VOCLayout(dataset)
    model, _ = load_model(model_path, Classifier, torch.device("cpu"))
    val = VOCDataset(layout, layout.ids(params["splits"]["val"]))
    ldm = params["cls"]["ldm"]
    return {
        "val mAP, intact": branch_map(model, val, ldm, shuffled=False)[0],
        f"val mAP, confused (grid {ldm['grid']}, k {ldm['k']})": branch_map(
            model, val, ldm, shuffled=True
        )[0],
    }


def main(
    params: Annotated[Path, typer.Option(help="The params to start from.")] = Path("params.yaml"),
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    work: Annotated[Path, typer.Option(help="Scratch folder.")] = Path("/tmp/premise"),
) -> None:
    config = with_overrides(yaml.safe_load(params.read_text()), overrides or [])
    config["seed"] = seed
    config["cls"]["ldm"]["enabled"] = config["cls"]["mdc"]["enabled"] = False
    path, dataset, model = train_plain(config, work / "plain")
    stage(
        "make_cam",
        path,
        *("--dataset", str(dataset), "--model", str(model), "--out", str(work / "cam")),
        *("--metrics", str(work / "cam.json"), "--sweep-plot", str(work / "sweep.csv")),
    )
    threshold = json.loads((work / "cam.json").read_text())["threshold"]
    layout = VOCLayout(dataset)
    profile = region_profile(
        SyntheticSpec(**config["data"]["synthetic"]),
        config["data"]["seed"],
        set(layout.ids(config["splits"]["score_cams"])),
        lambda image_id: load_cam(work / "cam" / f"{image_id}.npz"),
        threshold,
    )
    painted = json.loads(json.dumps(config))
    painted["data"]["synthetic"]["part_saliency"] = 0.0
    _, painted_dataset, painted_model = train_plain(painted, work / "painted")
    table = pd.DataFrame(
        {
            "plain classifier": maps(config, dataset, model),
            "parts painted out": maps(painted, painted_dataset, painted_model),
        }
    ).T
    print(table.to_markdown(floatfmt=".3f"))
    print(f"\nCAM profile of the plain classifier at its tuned threshold {threshold}:\n")
    print(profile.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    typer.run(main)
