"""Diagnostic: how much class evidence of the bodies alone a classifier's encoder carries.

The destruction-learning claim is that the LDM makes the encoder learn the object's local,
non-discriminative evidence (the body), which a plain classifier ignores once the part tells the
class. This measures it directly with a linear probe: the synthetic images are rendered again
with the parts painted out (``part_saliency: 0``, the same objects, colours and positions), the
encoder's last feature map of each (intact, unshuffled) image is averaged over each object's
body pixels (one vector per class present in the image), and a multinomial logistic regression
fitted on the train images' vectors is scored by its accuracy on the val images' (chance: one
over the number of classes). The encoder is frozen; only the probe learns, so a higher accuracy
means that the encoder's features separate the classes by their bodies.

    python -m studies.body_probe [--params params.yaml] [--model data/train_cls/model.pt]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import typer

from destseg.dataset.sources.synthetic import SyntheticSpec, generate
from destseg.dataset.torch_dataset import image_to_tensor
from destseg.models.classifier import Classifier
from studies.classifier_run import ModelOption, ParamsOption


def painted_out(spec: SyntheticSpec) -> SyntheticSpec:
    """The same dataset with the parts not drawn (every random draw as before)."""
    return replace(spec, part_saliency=0.0)


@torch.no_grad()
def body_features(
    model: Classifier, spec: SyntheticSpec, seed: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (N, C), classes (N,) from 0): the encoder's features averaged over the body
    pixels of each class of each ``split`` image, the parts painted out. Each feature cell
    weighs as the share of its pixels that are body pixels of the class."""
    vectors, classes = [], []
    for image_split, _, image, mask, parts in generate(painted_out(spec), seed):
        if image_split != split:
            continue
        features = model.encoder(image_to_tensor(image)[None])[0]
        stride = image.shape[0] // features.shape[-2]
        for cls in np.unique(mask[(mask > 0) & (mask < 255)]):
            body = torch.from_numpy(((mask == cls) & ~parts).astype(np.float32))
            weight = F.avg_pool2d(body[None, None], stride)[0, 0]
            weight = weight[: features.shape[-2], : features.shape[-1]]
            if weight.sum() > 0:
                vectors.append(((features * weight).sum((-2, -1)) / weight.sum()).numpy())
                classes.append(int(cls) - 1)
    return np.stack(vectors), np.asarray(classes)


def probe_accuracy(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    weight_decay: float = 1e-3,
) -> float:
    """Accuracy on ``test`` of a multinomial logistic regression fitted on ``train`` (features
    standardised with the train statistics, L2 penalty ``weight_decay``, full-batch L-BFGS from
    zero weights: deterministic, no seed involved)."""
    x, y = (torch.as_tensor(a) for a in train)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    x_test = (torch.as_tensor(test[0]) - mean) / std
    with torch.no_grad():
        predicted = (x_test @ weight + bias).argmax(1).numpy()
    return float((predicted == test[1]).mean())


def body_probe(model: Classifier, spec: SyntheticSpec, seed: int) -> float:
    """The probe's val accuracy for ``model``'s encoder on the dataset (``spec``, ``seed``)."""
    return probe_accuracy(
        body_features(model, spec, seed, "train"),
        body_features(model, spec, seed, "val"),
        spec.num_classes,
    )


def main(
    params: ParamsOption = Path("params.yaml"),
    model_path: ModelOption = Path("data/train_cls/model.pt"),
) -> None:
    import yaml

    from destseg.models.model_file import load_model

    config = yaml.safe_load(params.read_text())
    model, _ = load_model(model_path, Classifier, torch.device("cpu"))
    data = config["data"]
    spec = SyntheticSpec(**data["synthetic"])
    accuracy = body_probe(model.eval(), spec, data["seed"])
    print(
        f"linear probe on the bodies (parts painted out): val accuracy {accuracy:.3f} "
        f"(chance {1 / spec.num_classes:.3f})"
    )


if __name__ == "__main__":
    typer.run(main)
