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


# What the tests run on, whatever the machine: params.yaml says auto, which on a machine with a
# GPU would run the suite on CUDA in bf16 (and refuse the two-process tests on one GPU).
PINNED = {"device": "cpu", "amp": "off"}


def pinned(params: dict) -> dict:
    """``params`` on the CPU in float32 (a test that means another device says so)."""
    return {**params, **PINNED}


def write_params(tmp_path: Path, **overrides) -> Path:
    """params.yaml with some values changed (dotted keys), written to ``tmp_path``."""
    params = pinned(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def listed(folder: Path) -> list[Path]:
    """What a stage wrote into ``folder``, without the marker that names the stage."""
    from destseg.runtime.files import MARKER

    return sorted(p for p in folder.iterdir() if p.name != MARKER)
