"""The command-line shell every stage shares: its option types, its one-line errors and exit
codes, and the check that an input exists."""

from __future__ import annotations

import gc
import os
import signal
import warnings
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from destseg.runtime.files import (
    LOCKS_HELD_BY,
    check_file_output,
    check_not_inside_another_output,
    check_output,
    empty_directory,
    hold_lock,
    release_locks,
    write_json,
)
from destseg.runtime.lifeline import dvc_ancestor, end_with
from destseg.runtime.torchrun_env import under_torchrun

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


class StageError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``), raised like Ctrl-C so that the same clean-up runs."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _message(err: BaseException) -> str:
    """The one line to show for ``err``. An error in a DataLoader worker comes back with the
    worker's traceback in its message; its last line is the original error."""
    message = str(err)
    if "\nOriginal Traceback" in message:
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return message


def _watch_the_process_worked_for() -> None:
    """End with DVC (``dvc repro`` or ``dvc exp run`` runs this stage) or with the stage whose
    torchrun worker this process is (:mod:`destseg.runtime.lifeline`)."""
    if os.environ.get(LOCKS_HELD_BY) == str(os.getppid()):
        end_with(os.getppid())
    elif "DVC_STAGE" in os.environ and (dvc := dvc_ancestor()) is not None:
        end_with(dvc)


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


def reported(main: Callable) -> Callable:
    """Turn the expected failures of a stage into one line on stderr and exit status 1, an
    interrupt (Ctrl-C, SIGTERM) into one line and status 130 or 143 after the outputs' temporary
    files are removed, and warnings into one line each.

    Set DESTSEG_DEBUG=1 to get the full traceback instead.
    """

    @wraps(main)
    def wrapper(*args, **kwargs):
        debug = bool(os.environ.get("DESTSEG_DEBUG"))
        console = Console(stderr=True)
        # Process-wide settings, put back afterwards for callers that run stages in-process.
        previous = warnings.formatwarning, signal.getsignal(signal.SIGTERM)
        if not debug:
            warnings.formatwarning = _one_line_warning
        signal.signal(signal.SIGTERM, _terminate)
        _watch_the_process_worked_for()
        try:
            return main(*args, **kwargs)
        except (StageError, OSError, ValueError, FloatingPointError) as err:
            if debug:
                raise
            # the message quotes the user's text (params, paths): printed literally, never
            # read as Rich markup ("sgd[/]" would raise inside this handler)
            console.print(
                f"[bold red]error:[/] {escape(_message(err))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt as interrupt:
            if debug:
                raise
            console.print("[bold red]interrupted[/]: outputs left as they were", highlight=False)
            signum = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
            raise typer.Exit(128 + signum) from None
        finally:
            release_locks()
            warnings.formatwarning = previous[0]
            signal.signal(signal.SIGTERM, previous[1])

    return wrapper


def check_outputs(owner: str, folders: Iterable[Path] = (), files: Iterable[Path] = ()) -> None:
    """Refuse, before any work, every output of stage ``owner`` it may not write, and lock
    them all until the stage ends (:func:`reported` releases them): a file or someone else's
    folder where its folder goes, a folder where a file goes, a file inside another stage's
    folder or one that is not what the stage writes there
    (:func:`destseg.runtime.files.check_file_output`), one path given for two outputs, a file
    inside the stage's own output folder (replaced as a whole). A run that fails on its last
    output (a ``--metrics`` naming a folder) would otherwise have replaced its first one
    already, and a second run on the same outputs would train to the end and overwrite them.

    torchrun's workers do not lock: the stage that started them holds the locks (and the
    user's own torchrun leaves the locking to each folder's write, as before)."""
    folders, files = list(folders), list(files)
    where = [check_output(folder, owner) for folder in folders]
    for folder, final in zip(folders, where, strict=True):
        check_not_inside_another_output(folder, final, owner)
    where += [check_file_output(file, owner) for file in files]
    seen: dict[Path, Path] = {}
    for given, final in zip([*folders, *files], where, strict=True):
        absolute = Path(os.path.abspath(final))
        if absolute in seen:
            raise StageError(
                f"{given}: given for two outputs of the {owner} stage ({seen[absolute]})"
            )
        seen[absolute] = given
    for file, final in zip(files, where[len(folders) :], strict=True):
        for folder, folder_final in zip(folders, where, strict=False):
            if Path(os.path.abspath(folder_final)) in Path(os.path.abspath(final)).parents:
                raise StageError(
                    f"{file}: inside the output folder {folder}, which the {owner} stage "
                    "replaces as a whole; choose a path outside it"
                )
    if not under_torchrun():
        for final in where:
            hold_lock(final)


def not_trained(owner: str, out: Path, live_dir: Path, why: str) -> None:
    """What a training stage writes when its params say there is nothing to train: an empty
    model folder (the later stages read it as "none"), empty metrics and no curves of an
    earlier run. Called before the stage imports torch, which costs seconds at every start."""
    print(f"{owner}: {why}: not trained")
    empty_directory(out, owner)
    write_json(live_dir / "metrics.json", {})
    empty_directory(live_dir / "plots" / "metrics", owner)


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a StageError saying which stage makes it."""
    if not path.exists():
        raise StageError(f"{path}: {what} not found")
    return path
