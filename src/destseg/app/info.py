"""What a model file holds, without loading it into a network: its kind, its config (backbone,
number of classes, output stride, the classifier's modules), its class names, its size, and the
input every network of the pipeline expects.

    destseg info data/train_seg/model.pt
    destseg info data/train_cls/model.pt --json

Read with ``weights_only=True`` like every model file of the pipeline: a file that would run code
is refused, not opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.torch_dataset import IMAGENET_MEAN, IMAGENET_STD
from destseg.models.model_file import stored_classes
from destseg.runtime import torch_files
from destseg.runtime.shell import InputError, require

KINDS = ("classifier", "segmenter", "affinity")
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
OUTPUTS = {
    "classifier": "one score per foreground class (N, C-1); CAMs from its last features",
    "segmenter": "logits (N, C, H, W) at the input's size; the label map is their argmax",
    "affinity": "pairwise affinities of feature positions, for the random walk",
}


def describe(path: Path) -> dict:
    """The facts about the model file at ``path``."""
    state = torch_files.load(require(path, "model file"), map_location="cpu")
    if not isinstance(state, dict) or state.get("kind") not in KINDS:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{path}: not a model file of the pipeline (kind {found!r})")
    weights = state.get("state_dict", {})
    return {
        "kind": state["kind"],
        "config": state.get("config"),
        "classes": stored_classes(path),
        # learnt weights only: batch norm's running statistics are buffers, not parameters
        "parameters": sum(
            t.numel() for name, t in weights.items() if not name.endswith(BUFFERS)
        ),
        "input": {
            "layout": "N, 3, H, W: RGB at any size",
            "scale": "pixel values / 255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "output": OUTPUTS[state["kind"]],
    }


def main(
    path: Annotated[Path, typer.Argument(help="A model file (data/<stage>/model.pt).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print what a model file holds: kind, config, class names, input and output."""
    info = describe(path)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    classes = info["classes"]
    print(f"{path}: {info['kind']}, {info['parameters']:,} parameters")
    print(f"  config: {info['config']}")
    print(f"  classes: {', '.join(classes) if classes else 'not stored (see the dataset)'}")
    inputs = info["input"]
    print(f"  input: {inputs['layout']}, {inputs['scale']}, then - mean / std with")
    print(f"         mean {inputs['mean']}, std {inputs['std']}")
    print(f"  output: {info['output']}")

