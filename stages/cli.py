"""The command-line shell every stage shares: its option types and how a stage's process runs;
its one-line errors, exit codes and output checks are the library's
(:mod:`destseg.runtime.shell`), shared with ``destseg`` and the scripts."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from destseg.runtime.files import empty_directory, write_json
from destseg.runtime.shell import (  # noqa: F401 (the stages' shell, imported from here)
    InputError,
    Terminated,
    check_outputs,
    reported,
    require,
)

# Options that several stages share; each stage gives the default path that dvc.yaml uses.
ParamsOption = Annotated[
    Path, typer.Option("--params", help="The params file to read.", dir_okay=False)
]
DatasetOption = Annotated[Path, typer.Option(help="Dataset folder (VOC layout).")]
MetricsOption = Annotated[Path, typer.Option(help="Metrics JSON to write.")]
CheckpointOption = Annotated[Path, typer.Option(help="Resumable checkpoint (scratch).")]
LiveDirOption = Annotated[Path, typer.Option(help="DVCLive folder: metrics and plots.")]
# The folders and files one stage writes and later ones read, named alike in every stage.
CamsOption = Annotated[Path, typer.Option(help="Folder of CAM files.")]
AffLabelsOption = Annotated[Path, typer.Option(help="Folder of affinity label PNGs.")]
PropagatedOption = Annotated[Path, typer.Option(help="Folder of propagated CAM files.")]
PseudoMasksOption = Annotated[Path, typer.Option(help="Folder of pseudo-masks.")]
SegmenterOption = Annotated[Path, typer.Option("--model", help="Segmenter model file.")]

# train_aff writes its model under this name in its folder; an empty folder means no affinity.
AFFINITY_MODEL_FILE = "model.pt"
# train_recam writes ReCAM's classifier under this name in its folder; an empty folder means no
# ReCAM phase, and make_cam reads the classifier of train_cls.
RECAM_MODEL_FILE = "model.pt"
# pretrain writes its encoder's classifier under this name in its folder; an empty folder means
# no pretraining, and train_cls starts as cls.pretrained says.
PRETRAINED_MODEL_FILE = "model.pt"
ClassifierOption = Annotated[Path, typer.Option("--model", help="Classifier model file.")]
RecamOption = Annotated[
    Path, typer.Option(help=f"ReCAM's folder: its {RECAM_MODEL_FILE}, if any, replaces --model.")
]


def run_stage(app: typer.Typer) -> None:
    """Run a stage's command as its process's whole work (``python -m stages.<name>``).

    The objects of the imported modules (torch and torchvision: about 6 s and a few million
    objects) live until the process ends, so they are kept out of the cyclic garbage
    collector's generations (``gc.freeze``) once imported, and again at the end for what was
    imported lazily: its collections during the run and at exit then skip them. The collector,
    off while the stage's modules were imported (``stages/__init__.py``), is turned back on.
    Measured: 2.2 to 2.5 s less per stage process on a 2-core AMD EPYC (docs/testing.md). Only
    for a process of its own; a caller that runs a stage in-process keeps its collector as it
    was.
    """
    gc.freeze()
    gc.enable()
    try:
        app()
    finally:
        gc.freeze()


def not_trained(owner: str, out: Path, live_dir: Path, why: str) -> None:
    """What a training stage writes when its params say there is nothing to train: an empty
    model folder (the later stages read it as "none"), empty metrics and no curves of an
    earlier run. Called before the stage imports torch, which costs seconds at every start."""
    print(f"{owner}: {why}: not trained")
    empty_directory(out, owner)
    write_json(live_dir / "metrics.json", {})
    empty_directory(live_dir / "plots" / "metrics", owner)
