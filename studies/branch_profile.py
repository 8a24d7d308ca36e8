"""Diagnostic: what each branch of the destruction-learning classifier contributes, and what the
LDM branch learned.

The CAM is a sum over branches (src/destseg/models/classifier.py): CAM_c = w^_c . F (LDM branch;
at inference F^ = F), + w_c . F (plain branch), + w~_c . F~ (MDC branch). For the images of
splits.score_cams of the synthetic dataset, at scale 1 without flip, this splits each labelled
class's CAM into the three terms and averages each over the part, body and background pixels of
that class's objects, in logit units (the columns of a row add up to the mean CAM before ReLU
and normalisation; a term higher on bodies than on the background is body evidence). Also the
norm of each branch's classifier weights, and the mAP on splits.val of each branch alone (its
term of the logits), on intact images and on region-confused ones (the LDM's own shuffling,
seeded): if the LDM branch recognises shuffled images, it learned evidence that survives the
shuffle (bodies, textures, parts inside one cell), not the global layout.

    python -m studies.branch_profile [--params params.yaml] [--model data/train_cls/model.pt]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import typer

from destseg.cam.profile import class_regions
from destseg.cam.strided import upsample_strided
from destseg.dataset.layout import VOCLayout, load_image
from destseg.dataset.sources.synthetic import SyntheticSpec, generate
from destseg.dataset.torch_dataset import VOCDataset, image_to_tensor
from destseg.evaluation.metrics import multilabel_scores
from destseg.models.destruction import destruct_batch
from studies.classifier_run import DatasetOption, ModelOption, ParamsOption, load_classifier_run


def branch_names(model) -> list[str]:
    return (["LDM (w^.F)"] if model.ldm else []) + ["plain (w.F)"] + (
        ["MDC (w~.F~)"] if model.mdc else []
    )  # fmt: skip


def branch_weights(model) -> list[torch.Tensor]:
    """The classifier's weights (K, C) of each branch, in the order of the stacked features."""
    weight = model.classifier.weight[:, :, 0, 0]
    return list(weight.split(model.encoder.out_channels, dim=1))


@torch.no_grad()
def branch_cams(model, image: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W): each branch's term of the CAM of an intact image, at the image's size."""
    features = model.branches(image[None], destruct=False)
    terms = [
        torch.einsum("kc,chw->khw", w, f[0])
        for w, f in zip(branch_weights(model), features, strict=True)
    ]
    stride = model.encoder.output_stride
    return upsample_strided(torch.stack(terms), tuple(image.shape[-2:]), stride)


def profile(model, layout: VOCLayout, spec: SyntheticSpec, seed: int, ids: set[str]):
    rows = []
    names = branch_names(model)
    for _, image_id, _, mask, parts in generate(spec, seed):
        if image_id not in ids:
            continue
        image = image_to_tensor(load_image(layout.image_path(image_id)))
        terms = branch_cams(model, image).numpy()
        for cls in layout.labels[image_id]:
            per_class = terms[:, cls - 1]
            for region, pixels in class_regions(mask, parts, cls).items():
                if pixels.any():
                    row = {"region": region}
                    row |= {n: per_class[b][pixels].mean() for b, n in enumerate(names)}
                    row["CAM (sum)"] = per_class.sum(0)[pixels].mean()
                    rows.append(row)
    return pd.DataFrame(rows).groupby("region", sort=False).mean()


@torch.no_grad()
def branch_map(model, dataset: VOCDataset, ldm: dict, shuffled: bool) -> list[float]:
    """mAP of each branch's term of the logits alone, on intact or region-confused images."""
    generator = torch.Generator().manual_seed(0)
    scores = [[] for _ in branch_weights(model)]
    targets = []
    for item in dataset:
        x = item["image"][None]
        if shuffled:
            x = destruct_batch(x, ldm["grid"], ldm["k"], 1.0, generator)
        features = model.branches(x, destruct=False)
        for b, (w, f) in enumerate(zip(branch_weights(model), features, strict=True)):
            scores[b].append((w @ f[0].mean((-2, -1))).numpy())
        targets.append(item["target"].numpy())
    targets = np.stack(targets)
    return [multilabel_scores(np.stack(s), targets)["map"] for s in scores]


def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: ModelOption = Path("data/train_cls/model.pt"),
    dataset: DatasetOption = Path("data/dataset"),
) -> None:
    config, layout, model, stored = load_classifier_run(params, model_path, dataset)
    names = branch_names(model)
    norms = [w.norm(dim=1).mean().item() for w in branch_weights(model)]
    print(pd.DataFrame({"branch": names, "mean |w_c|": norms}).to_markdown(index=False))
    spec = SyntheticSpec(**config["data"]["synthetic"])
    reported = set(layout.ids(config["splits"]["score_cams"]))
    table = profile(model, layout, spec, config["data"]["seed"], reported)
    print("\nMean CAM term per region (logit units):\n")
    print(table.to_markdown(floatfmt=".3f"))
    val = VOCDataset(layout, layout.ids(config["splits"]["val"]))
    ldm = stored.get("ldm") or config["cls"]["ldm"]
    rows = {
        "intact images": branch_map(model, val, ldm, shuffled=False),
        f"region-confused images (grid {ldm['grid']}, k {ldm['k']})": branch_map(
            model, val, ldm, shuffled=True
        ),
    }
    print("\nmAP on splits.val of each branch's logits alone:\n")
    print(pd.DataFrame(rows, index=names).T.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    typer.run(main)
