"""Resume checkpoints: the state of an interrupted training, and the fingerprint that says
whether it may be continued.

A checkpoint is scratch, written (atomically) after every epoch and deleted once the model
file is written; it is not a model file (:mod:`destseg.models.model_file`). It is resumed
only when its fingerprint, a digest of everything that determines the result (params, seed,
input files, precision, number of processes), matches the run's, so a changed parameter never
continues a stale run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from destseg.runtime import torch_files

# What a resume checkpoint holds; a file without all of them is not resumed. It also holds the
# gradient scaler's state under "scaler", absent from checkpoints written before mixed precision
# existed and empty when the scaler is off (anything but fp16).
CHECKPOINT_KEYS = ("fingerprint", "history", "model", "optimizer", "scheduler")


class CheckpointWarning(UserWarning):
    """A resume checkpoint could not be used; training starts over."""


class CheckpointRefused(ValueError):
    """The file at the checkpoint path is not a resume checkpoint: left alone, nothing trained."""


_LEFT_ALONE = (
    "left as it is, nothing trained: delete it to train from scratch, or give --checkpoint "
    "another path"
)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def fingerprint(*parts: object, files: Iterable[Path] = ()) -> str:
    """A digest of plain values and file contents: what a resumable checkpoint must match."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def save_checkpoint(
    path: Path, digest: str, history: list[dict[str, float]], parts: Mapping[str, Stateful]
) -> None:
    """Write the state of ``parts`` (model, optimizer, scheduler, scaler) with the scores of
    every epoch so far and the run's fingerprint ``digest``, atomically."""
    state = {"fingerprint": digest, "history": history}
    state |= {name: part.state_dict() for name, part in parts.items()}
    torch_files.save(state, path)


def load_checkpoint(path: Path, digest: str, device: torch.device) -> dict | None:
    """The resume state at ``path`` if it is whole and was written with fingerprint ``digest``.

    A checkpoint of other params or inputs is stale: training starts over (with a message) and
    replaces it. Anything else at ``path`` that is not a resume checkpoint (another stage's
    model file, the dataset's labels, the user's notes, a damaged or crafted file, whose
    pickle ``weights_only`` refuses to rebuild) raises :class:`CheckpointRefused` before any
    training: the run would overwrite it after its first epoch and delete it at the end, and
    checkpoints are written atomically, so none of ours is ever half-written.
    """
    if not path.is_file():
        return None
    try:
        state = torch_files.load(path, map_location=device)
    except torch_files.UnreadableFileError as err:
        raise CheckpointRefused(f"{err}; {_LEFT_ALONE}") from None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        raise CheckpointRefused(
            f"{path}: not a resume checkpoint (it lacks {', '.join(CHECKPOINT_KEYS)}); "
            f"{_LEFT_ALONE}"
        )
    if state["fingerprint"] != digest:
        print(f"{path}: written with other params or inputs; training starts over", flush=True)
        return None
    return state


def resume(
    path: Path, digest: str, device: torch.device, parts: Mapping[str, Stateful]
) -> list[dict[str, float]]:
    """Load the checkpoint at ``path`` into ``parts`` and return its history (the scores of the
    epochs it holds); an empty history when there is nothing to resume. A checkpoint that does
    not fit the parts leaves them as they were, with a warning."""
    state = load_checkpoint(path, digest, device)
    if state is None:
        return []
    saved = {name: copy.deepcopy(part.state_dict()) for name, part in parts.items()}
    try:
        for name, part in parts.items():
            if name in CHECKPOINT_KEYS or state.get(name):  # the scaler's state is optional
                part.load_state_dict(state[name])
        return [dict(scores) for scores in state["history"]]
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        for name, part in parts.items():
            if saved[name]:
                part.load_state_dict(saved[name])
        warnings.warn(
            f"{path}: does not fit this model ({type(err).__name__}); ignored, training starts "
            "over",
            CheckpointWarning,
            stacklevel=2,
        )
        return []
