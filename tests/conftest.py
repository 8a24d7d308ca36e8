"""Shared fixtures: a tiny synthetic dataset written once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from destseg.dataset.layout import VOCLayout  # noqa: E402
from destseg.dataset.sources.synthetic import SyntheticSpec, write_dataset  # noqa: E402

TINY = SyntheticSpec(num_classes=3, image_size=64, train_images=12, val_images=4)


@pytest.fixture(scope="session")
def tiny_layout(tmp_path_factory) -> VOCLayout:
    layout = VOCLayout(tmp_path_factory.mktemp("dataset"))
    write_dataset(layout, TINY, seed=0)
    return layout


def write_params(tmp_path: Path, **overrides) -> Path:
    """params.yaml with some values changed (dotted keys), written to ``tmp_path``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path
