"""Model files that carry their own architecture, so later stages rebuild the exact network.

A model file holds ``kind`` (the network class's ``KIND``: classifier, segmenter or affinity),
the ``config`` the network was built with, the weights, and the dataset's ``classes`` (names,
background first), so that a model's predictions can be named without its dataset. Loading
rebuilds the network from the stored config, never from the current params, once that config
has passed the schema of its kind (:mod:`destseg.models.configs`), and a file of the wrong
kind or with mismatched weights is a clear error. Callers name the network class they expect,
so a stage imports (and depends on) only the network it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from destseg.models.configs import CONFIGS
from destseg.runtime import torch_files

# A network class with a KIND (Classifier, Segmenter, AffinityNet), built from its config.
Network = type[nn.Module]


def build_model(network: Network, config: dict[str, Any], pretrained: bool = False) -> nn.Module:
    return network(**config, pretrained=pretrained)


def save_model(
    path: Path, model: nn.Module, config: dict[str, Any], classes: list[str] | None = None
) -> None:
    """Write ``model``'s weights with its kind, the ``config`` it was built from and, when
    given, the class names of its dataset (background first)."""
    state = {"kind": model.KIND, "config": config, "state_dict": model.state_dict()}
    if classes is not None:
        state["classes"] = list(classes)
    torch_files.save(state, path)


def stored_classes(path: Path) -> list[str] | None:
    """The class names a model file carries (background first), or None for a file written
    without them; refused unless they are as many names as its network has outputs."""
    state = torch_files.load(path, map_location="cpu")
    classes = state.get("classes") if isinstance(state, dict) else None
    if classes is None:
        return None
    config = state.get("config") if isinstance(state, dict) else None
    outputs = config.get("num_classes") if isinstance(config, dict) else None
    # a classifier scores the foreground classes only, a segmenter the background too, and
    # AffinityNet predicts no class at all
    expected = outputs + 1 if state.get("kind") == "classifier" and outputs else outputs
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ValueError(f"{path}: its class names are not a list of names")
    if expected is not None and len(classes) != expected:
        raise ValueError(
            f"{path}: {len(classes)} class names for a network of {expected} classes"
        )
    return classes


def load_model(
    path: Path, network: Network, device: torch.device, num_classes: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The ``network`` stored at ``path`` in eval mode on ``device``, and its config; with
    ``num_classes``, refused unless it predicts that many classes (a model trained on another
    dataset would otherwise fail deep inside torch, or silently mislabel)."""
    if Path(path).is_dir():
        raise ValueError(f"{path}: a folder, not a model file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: model file not found (run the stage that trains it)")
    state = torch_files.load(path, map_location=device)
    kind = network.KIND
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: expected a {kind} model file, found {found!r}")
    config = state.get("config")
    try:  # before anything is built: the config decides how much memory the network takes
        CONFIGS[kind].model_validate(config)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise ValueError(
            f"{path}: not a valid {kind} configuration ({where}: "
            f"{first['msg'].removeprefix('Value error, ')[:200]})"
        ) from None
    found_classes = config.get("num_classes") if isinstance(config, dict) else num_classes
    if num_classes is not None and found_classes != num_classes:
        raise ValueError(
            f"{path}: the model predicts {found_classes} classes, the dataset needs "
            f"{num_classes}: it was trained on another dataset (rerun its training stage)"
        )
    try:
        model = build_model(network, state["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid {kind} configuration ({err})") from None
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as err:
        first = str(err).splitlines()[0]
        raise ValueError(
            f"{path}: weights do not fit a {kind} {state['config']}: {first}"
        ) from None
    if not all(t.isfinite().all() for t in model.state_dict().values() if t.is_floating_point()):
        # every output would be NaN, scored as all-background: say so instead
        raise ValueError(f"{path}: the weights hold NaN or infinite values (did training diverge?)")
    return model.to(device).eval(), state["config"]


def load_weights(model: nn.Module, path: Path, network: Network) -> dict[str, Any]:
    """Load the ``network`` stored at ``path`` into ``model``, a network of the same kind built
    with a config that may add layers to the stored one (ReCAM's head on a trained classifier):
    every stored weight must fit, the added ones keep their initialisation. Returns the stored
    config."""
    stored, config = load_model(path, network, torch.device("cpu"))
    try:
        missing, unexpected = model.load_state_dict(stored.state_dict(), strict=False)
    except RuntimeError as err:  # a shape mismatch; its second line names the weight
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ValueError(
            f"{path}: its weights do not fit the network to train ({lines[-1]})"
        ) from None
    added = {name for name, _ in model.named_parameters()} - set(stored.state_dict())
    if unexpected or set(missing) - added:
        first = (unexpected or sorted(set(missing) - added))[0]
        raise ValueError(f"{path}: its weights do not fit the network to train ({first})")
    return config


def load_encoder(model: nn.Module, path: Path, network: Network) -> dict[str, Any]:
    """Copy the encoder of the ``network`` stored at ``path`` into ``model``'s, leaving the rest
    (a classifier head for other classes, the MDC) as built: an encoder trained on another
    corpus starts this training. The two encoders must be of one architecture. Returns the
    stored config."""
    stored, config = load_model(path, network, torch.device("cpu"))
    try:
        model.encoder.load_state_dict(stored.encoder.state_dict())
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ValueError(
            f"{path}: its encoder does not fit the network to train ({lines[-1]})"
        ) from None
    return config
