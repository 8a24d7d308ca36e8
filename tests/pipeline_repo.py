"""A temporary copy of the repository in which the real ``dvc repro`` runs (end-to-end tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT, pinned


def set_dotted(params: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    for parent in parents:
        params = params[parent]
    params[key] = value


# Small enough for CI, learnable enough that every stage must beat the all-background baseline:
# bodies nearly as salient as parts, no clutter (the rest of params.yaml's data.synthetic)...
TINY_DATA = {
    "num_classes": 3,
    "image_size": 64,
    "train_images": 24,
    "val_images": 6,
    "body_saliency": 0.9,
    "clutter": 0.0,
}
# ... and output stride 8 (at 16 a 64 px image gives 4 x 4 maps).
TINY_PARAMS = {
    "cls.crop_size": 64,
    "cls.batch_size": 4,
    "cls.epochs": 8,
    "cls.output_stride": 8,
    "cam.scales": [1.0, 0.5],
    "refine.method": "affinity+crf",  # every stage really runs
    "aff.crop_size": 64,
    "aff.batch_size": 4,
    "aff.epochs": 6,
    "propagate.exp_times": 4,
    "seg.crop_size": 64,
    "seg.batch_size": 4,
    "seg.epochs": 8,
    "seg.output_stride": 8,
    "evaluate.scales": [1.0, 0.75],
    "evaluate.flip": True,
}
# the class names a user's folder gives the tiny data's classes
FOLDER_CLASSES = ["background", "ring", "block", "wedge"]


# the real configurations' training crop in their end-to-end runs, whose images have sides of
# 83 to 160 px (a quarter of VOC's and COCO's)
TOY_CROP = 128


def toy_training() -> dict:
    """What the real configurations' end-to-end runs change in each training: one epoch (one
    of ReCAM's phase too); batch 1 for the classifier and AffinityNet (one step per epoch on
    two training images), 2 for the segmenter, whose ASPP pools each image to 1 x 1 before a
    BatchNorm that needs two values per channel; crops of 128 (a ResNet-50 step at 512 costs
    about 20 s per image on one CPU core, a sixteenth of that at 128: the shipped crops go
    through the three networks and their losses on the meta device,
    tests/stages/test_shipped_crops.py); and ``pretrained: false`` (no ImageNet weights
    offline) with the freezing of ImageNet statistics and stages that only makes sense with
    them (tests/models/test_freezing.py covers it)."""
    sizes = {}
    for section, batch in (("cls", 1), ("aff", 1), ("seg", 2)):
        sizes |= {f"{section}.epochs": 1, f"{section}.batch_size": batch}
        sizes |= {f"{section}.crop_size": TOY_CROP}
        sizes |= {f"{section}.pretrained": False, f"{section}.freeze_bn": False}
        sizes[f"{section}.freeze_through"] = "none"
    return sizes | {"recam.epochs": 1}  # ReCAM's second phase of the classifier, when on


def run(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def dvc_env() -> dict[str, str]:
    """The environment to run git and DVC in a test repository with: this Python's dvc
    first on the PATH, a committer, no analytics."""
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        DVC_NO_ANALYTICS="1",
    )
    return env


def own_copy(repo: Path, tmp_path: Path) -> Path:
    """A copy of the reproduced repository ``repo`` (git, DVC cache, outputs) to change or
    run DVC in: the original is shared by the tests of every test process and only read (two
    DVC commands in one repository at once would also fight over its lock)."""
    copy = tmp_path / "repo"
    cache = Path(".dvc") / "cache"
    shutil.copytree(repo, copy, symlinks=True, ignore=lambda folder, _: _cache_of(repo, folder))
    # the DVC cache, hard-linked: DVC adds files to its cache and never writes into one
    # (they are read-only), so the copies share its tens of megabytes instead of copying them
    shutil.copytree(repo / cache, copy / cache, symlinks=True, copy_function=os.link)
    return copy


def _cache_of(repo: Path, folder: str) -> list[str]:
    """What :func:`own_copy`'s first pass leaves out of ``folder``: the DVC cache."""
    return ["cache"] if Path(folder) == repo / ".dvc" else []


def prepare_repo(
    repo: Path, overrides: dict, base: Path = ROOT / "params.yaml", **env_vars: str
) -> dict:
    """Copy the repository's code, dvc.yaml and ``data/folder`` into ``repo``, write ``base``
    on the CPU in float32 (:func:`conftest.pinned`) with ``overrides`` (dotted keys) as
    params.yaml and commit;
    return the environment to run DVC there with (``env_vars`` added)."""
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "data" / "folder", repo / "data" / "folder")  # prepare's dependency
    (repo / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    params = pinned(yaml.safe_load(base.read_text()))
    for dotted, value in overrides.items():
        set_dotted(params, dotted, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**dvc_env(), **env_vars}
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny"], repo, env)
    return env


def reproduce(
    repo: Path, overrides: dict, base: Path = ROOT / "params.yaml", **env_vars: str
) -> tuple:
    """:func:`prepare_repo`, then the real ``dvc repro`` there."""
    env = prepare_repo(repo, overrides, base, **env_vars)
    run(["dvc", "repro"], repo, env)
    return repo, env
