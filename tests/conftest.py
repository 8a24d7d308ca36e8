"""Shared fixtures: a tiny synthetic dataset written once per session, the threads each test
process may use, and folders that the test processes of one run share."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# pytest-xdist runs the suite in several processes (pyproject.toml: -n auto): each gets its
# share of the cores, and so do the stages it runs (DVC passes the environment on). Set before
# torch is imported: its thread pool reads it once. Several torch processes each using every
# core slow each other down about tenfold.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, _share))

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


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name`` that ``build`` fills, built once for all the test processes of
    this run (the first to ask builds it while the others wait) and only read afterwards:
    the end-to-end pipelines that many tests read. A test that writes copies it first."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the folder every process's base folder is in
    folder = root / name
    with _locked(root / f"{name}.lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


# What the end-to-end files cost, in rough seconds on 2 cores (docs/testing.md): with several
# test processes, each file's tests go to the front of one process's share of the suite, the
# files balanced over the processes, so that the long runs start first and side by side, and
# the short tests fill in behind them. (pytest-xdist's worksteal hands process i the i-th
# contiguous share of the collected order, then moves tests from the end of the fullest queue.)
E2E_COST = {
    "test_e2e.py": 500,  # the tiny pipeline, built once, and every test that reads or copies it
    "test_e2e_voc.py": 350,  # the paper's configuration and both controls' configurations
    "test_e2e_coco.py": 200,
    "test_own_images.py": 80,  # a tags-only folder through dvc repro, predict and export
    "test_gpu_check.py": 70,
}


def pytest_collection_modifyitems(config, items):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    heavy: dict[str, list] = {}
    light = []
    for item in items:
        name = item.path.name
        if item.get_closest_marker("e2e") and name in E2E_COST:
            heavy.setdefault(name, []).append(item)
        else:
            light.append(item)
    shares: list[list] = [[] for _ in range(workers)]
    load = [0] * workers
    for name in sorted(heavy, key=lambda n: -E2E_COST[n]):
        least = load.index(min(load))
        shares[least] += heavy[name]
        load[least] += E2E_COST[name]
    # fill every share up to the size worksteal cuts it to, with the short tests
    ordered = []
    for i, share in enumerate(shares):
        size = (i + 1) * len(items) // workers - i * len(items) // workers
        take = max(0, size - len(share))
        ordered += share + light[:take]
        light = light[take:]
    items[:] = ordered + light
