"""Shared fixtures: a tiny synthetic dataset written once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from destseg.synthetic import SyntheticSpec, write_dataset  # noqa: E402
from destseg.voc import VOCLayout  # noqa: E402

TINY = SyntheticSpec(num_classes=3, image_size=64, train_images=12, val_images=4)


@pytest.fixture(scope="session")
def tiny_layout(tmp_path_factory) -> VOCLayout:
    layout = VOCLayout(tmp_path_factory.mktemp("dataset"))
    write_dataset(layout, TINY, seed=0)
    return layout
