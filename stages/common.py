"""What every stage shares: reading params.yaml, one-line errors, fingerprints of inputs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console

from destseg.voc import VOCLayout
from stages.params import RunParams, SplitParams

S = TypeVar("S", bound=BaseModel)

# Options that several stages share; each stage gives the default path that dvc.yaml uses.
ParamsOption = Annotated[
    Path, typer.Option("--params", help="The params file to read.", dir_okay=False)
]
DatasetOption = Annotated[Path, typer.Option(help="Dataset folder (VOC layout).")]
MetricsOption = Annotated[Path, typer.Option(help="Metrics JSON to write.")]
CheckpointOption = Annotated[Path, typer.Option(help="Resumable checkpoint (scratch).")]
LiveDirOption = Annotated[Path, typer.Option(help="DVCLive folder: metrics and plots.")]

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
        raise StageError(f"{path}: {where}: {first['msg']} (got {first.get('input')!r})") from None


def read_run(path: Path) -> RunParams:
    """The top-level ``seed`` and ``device``."""
    return read_params(path, None, RunParams)


def read_splits(path: Path) -> SplitParams:
    """The ``splits`` section: which image lists the stages read."""
    return read_params(path, "splits", SplitParams)


def cam_ids(layout: VOCLayout, splits: SplitParams) -> tuple[list[str], set[str]]:
    """The images that get CAMs and pseudo-masks (``splits.train``), and those of them that
    are scored (``splits.score_cams``, which must lie inside ``splits.train``)."""
    ids = layout.ids(splits.train)
    scored = layout.ids(splits.score_cams)
    outside = sorted(set(scored) - set(ids))
    if outside:
        raise StageError(
            f"splits.score_cams: {len(outside)} images of {layout.split_path(splits.score_cams)} "
            f"are not in splits.train ({splits.train}), e.g. {outside[0]}"
        )
    return ids, set(scored)


def fingerprint(*parts: object, files: Iterable[Path] = ()) -> str:
    """A digest of plain values and file contents: what a resumable checkpoint must match."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def reported(main: Callable) -> Callable:
    """Turn the expected failures of a stage into one line on stderr and exit status 1.

    Set DESTSEG_DEBUG=1 to get the full traceback instead.
    """

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (StageError, OSError, ValueError, FloatingPointError) as err:
            if os.environ.get("DESTSEG_DEBUG"):
                raise
            Console(stderr=True).print(
                f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None

    return wrapper


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a StageError saying which stage makes it."""
    if not path.exists():
        raise StageError(f"{path}: {what} not found")
    return path
