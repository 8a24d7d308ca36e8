"""Model files that carry their own architecture, so later stages rebuild the exact network.

A model file holds ``kind`` (classifier, segmenter or affinity), the ``config`` the network was
built with, and the weights. Loading rebuilds the network from the stored config, never from the
current params, and a file of the wrong kind or with mismatched weights is a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from destseg import torch_io
from destseg.models.affinity import AffinityNet
from destseg.models.classifier import Classifier
from destseg.models.segmenter import Segmenter

BUILDERS: dict[str, type[nn.Module]] = {
    "classifier": Classifier,
    "segmenter": Segmenter,
    "affinity": AffinityNet,
}


def build_model(kind: str, config: dict[str, Any], pretrained: bool = False) -> nn.Module:
    return BUILDERS[kind](**config, pretrained=pretrained)


def save_model(path: Path, kind: str, config: dict[str, Any], model: nn.Module) -> None:
    torch_io.save({"kind": kind, "config": config, "state_dict": model.state_dict()}, path)


def load_model(path: Path, kind: str, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The network stored at ``path`` in eval mode on ``device``, and its config."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: model file not found (run the stage that trains it)")
    state = torch_io.load(path, map_location=device)
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: expected a {kind} model file, found {found!r}")
    try:
        model = build_model(kind, state["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid {kind} configuration ({err})") from None
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as err:
        first = str(err).splitlines()[0]
        raise ValueError(
            f"{path}: weights do not fit a {kind} {state['config']}: {first}"
        ) from None
    return model.to(device).eval(), state["config"]
