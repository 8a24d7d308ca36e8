"""What every stage shares: reading params.yaml, one-line errors, fingerprints of inputs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console

from destseg.voc import VOCLayout, image_size
from stages.params import DistParams, RunParams, SplitParams, feature_size

if TYPE_CHECKING:
    import torch

S = TypeVar("S", bound=BaseModel)

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


class StageError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def read_params(path: Path, key: str | None, schema: type[S]) -> S:
    """Validate section ``key`` of the params file (the top level when ``key`` is None)."""
    if not path.is_file():
        raise StageError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise StageError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    except UnicodeDecodeError:
        raise StageError(f"{path}: not a text file") from None
    if not isinstance(params, dict):
        raise StageError(
            f"{path}: expected a mapping of sections (seed:, cls:, ...), got a "
            f"{type(params).__name__}"
        )
    if key is None:
        data = {name: params.get(name) for name in schema.model_fields}
    elif key not in params:
        raise StageError(f"{path}: section '{key}' is missing")
    else:
        data = params[key]
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in ((key,) if key else ()) + tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] != "value_error":  # a type or range error: show what was given
            message += f" (got {first.get('input')!r})"
        raise StageError(f"{path}: {where}: {message}") from None


def read_run(path: Path) -> RunParams:
    """The top-level ``seed``, ``device`` and ``amp``."""
    return read_params(path, None, RunParams)


def read_dist(path: Path) -> DistParams:
    """The ``dist`` section: how many processes run the stage."""
    return read_params(path, "dist", DistParams)


def run_in_workers(nproc: int, module: str, device: torch.device | None = None) -> bool:
    """With ``dist.nproc`` > 1 and outside torchrun: run this stage's command again, with the
    same arguments, in ``nproc`` processes under torchrun on this machine, wait for them and
    return True (they did the stage's work). Otherwise return False: this process does it,
    alone or as one of torchrun's processes (started here, or by the user's own torchrun over
    several machines). ``module`` is the stage's module (its ``__spec__.name``); ``device``,
    when the stage runs networks, is checked to have a GPU per process first."""
    import torch  # here, not at the top: the prepare stage has no use for torch

    from destseg.distributed import launch, under_torchrun

    if nproc == 1 or under_torchrun():
        return False
    if device is not None and device.type == "cuda" and nproc > torch.cuda.device_count():
        raise StageError(
            f"dist.nproc: {nproc} processes need {nproc} GPUs, and "
            f"{torch.cuda.device_count()} are visible"
        )
    main = sys.modules["__main__"].__spec__
    if main is None or main.name != module:
        raise StageError(
            f"dist.nproc: {nproc} processes run the stage as a command (python -m {module}), "
            "which this process is not"
        )
    print(f"{module}: {nproc} processes (torchrun)", flush=True)
    try:
        launch(nproc, module, sys.argv[1:])
    except KeyboardInterrupt as interrupt:
        if interrupt.args == (signal.SIGTERM,):
            raise Terminated from None
        raise
    return True


def read_splits(path: Path) -> SplitParams:
    """The ``splits`` section: which image lists the stages read."""
    return read_params(path, "splits", SplitParams)


def cam_ids(layout: VOCLayout, splits: SplitParams) -> tuple[list[str], set[str]]:
    """The images that get CAMs and pseudo-masks (``splits.train``), and those of them that
    are scored (``splits.score_cams``, which must lie inside ``splits.train``)."""
    ids = layout.ids(splits.train)
    scored = layout.ids(splits.score_cams)
    _inside_train("score_cams", layout, splits.score_cams, scored, splits.train, ids)
    return ids, set(scored)


def tune_ids(layout: VOCLayout, splits: SplitParams, wanted_by: str | None) -> list[str]:
    """The images of ``splits.tune`` (inside ``splits.train``, outside ``splits.score_cams``),
    or none without a tuning list. ``wanted_by`` names a param set to ``auto``, which needs
    a non-empty list."""
    if splits.tune is None:
        if wanted_by:
            raise StageError(
                f"{wanted_by}: auto needs splits.tune, a list of images with masks inside "
                f"splits.train and outside splits.score_cams; name one or give a number"
            )
        return []
    tune = layout.ids(splits.tune)
    if wanted_by and not tune:
        raise StageError(
            f"{wanted_by}: auto needs images, and {layout.split_path(splits.tune)} is empty"
        )
    _inside_train("tune", layout, splits.tune, tune, splits.train, layout.ids(splits.train))
    reported = sorted(set(tune) & set(layout.ids(splits.score_cams)))
    if reported:
        raise StageError(
            f"splits.tune: {len(reported)} images of {layout.split_path(splits.tune)} are also "
            f"in splits.score_cams ({splits.score_cams}), e.g. {reported[0]}: a threshold tuned "
            f"on the reported images is an oracle, not a result"
        )
    return tune


def _inside_train(
    key: str, layout: VOCLayout, name: str, ids: list[str], train: str, train_ids: list[str]
) -> None:
    outside = sorted(set(ids) - set(train_ids))
    if outside:
        raise StageError(
            f"splits.{key}: {len(outside)} images of {layout.split_path(name)} are not in "
            f"splits.train ({train}), e.g. {outside[0]}"
        )


def fingerprint(*parts: object, files: Iterable[Path] = ()) -> str:
    """A digest of plain values and file contents: what a resumable checkpoint must match."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


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
        try:
            return main(*args, **kwargs)
        except (StageError, OSError, ValueError, FloatingPointError) as err:
            if debug:
                raise
            console.print(f"[bold red]error:[/] {_message(err)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as interrupt:
            if debug:
                raise
            console.print("[bold red]interrupted[/]: outputs left as they were", highlight=False)
            signum = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
            raise typer.Exit(128 + signum) from None
        finally:
            warnings.formatwarning = previous[0]
            signal.signal(signal.SIGTERM, previous[1])

    return wrapper


def check_classes(config: dict, expected: int, model_path: Path, layout: VOCLayout) -> None:
    """Refuse a model trained for another number of classes than the dataset has."""
    if config.get("num_classes") != expected:
        raise StageError(
            f"{model_path}: the model predicts {config.get('num_classes')} classes, the dataset "
            f"{layout.root} needs {expected}: it was trained on another dataset (rerun its "
            "training stage)"
        )


def check_mdc_scales(config: dict, scales: list[float], layout: VOCLayout, ids: list[str]) -> None:
    """Refuse CAM scales at which the classifier's MDC (``config`` as the model file stores it)
    would get a feature map with fewer cells than its grid on the smallest image of ``ids``."""
    mdc = config.get("mdc")
    if not mdc:
        return
    side = min(min(image_size(layout.image_path(i))) for i in ids)
    scaled = max(1, round(side * min(scales)))
    cells = feature_size(scaled, config["output_stride"], mdc["position"])
    if mdc["grid"] > cells:
        raise StageError(
            f"cam.scales: at scale {min(scales)} the smallest image ({side} px) gives the MDC a "
            f"{cells}x{cells} feature map, smaller than cls.mdc.grid ({mdc['grid']}); drop that "
            "scale or lower cls.mdc.grid"
        )


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a StageError saying which stage makes it."""
    if not path.exists():
        raise StageError(f"{path}: {what} not found")
    return path
