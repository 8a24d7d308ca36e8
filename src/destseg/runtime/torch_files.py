"""Torch files in and out: never code from a file, and errors that name the file.

Every torch file is loaded with ``weights_only=True``: a model file or a resume checkpoint from
elsewhere can hold only tensors and plain values, so a crafted pickle cannot run its payload.
Saving serialises into memory first and then writes the bytes through the OS, so a full disk
is an ordinary ``OSError`` naming the file (torch's own writer reports it as an opaque
``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any

import torch

from destseg.runtime.files import atomic_path


class UnreadableFileError(ValueError):
    """A torch file is truncated, corrupt, not a torch file, or holds more than data."""


def save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` of ``obj`` to ``path``, atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load(path: str | os.PathLike, map_location: torch.device | str | None = None) -> Any:
    """What :func:`save` wrote to ``path``, loaded with ``weights_only=True``.

    A missing file raises ``FileNotFoundError``; anything else that stops the load (a truncated
    archive, random bytes, a pickle of arbitrary objects) raises :class:`UnreadableFileError`.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    # torch raises RuntimeError, UnpicklingError, EOFError, ValueError, ... depending on the damage
    except Exception as err:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
            raise UnreadableFileError(
                f"{path}: not a readable torch file (not the zip archive torch.save writes: "
                "another kind of file, or a truncated one)"
            ) from None
        raise UnreadableFileError(f"{path}: not a readable torch file ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    if isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err):
        return (
            "it holds Python objects besides tensors and plain values; refused, as loading "
            "them could run code"
        )
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first[:120]}" if first else type(err).__name__
