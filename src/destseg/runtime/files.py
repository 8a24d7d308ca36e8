"""Atomic writes: a killed process never leaves an output that looks complete.

Every output is first written under a temporary name in the same folder, ``.<name>.tmp``, then
renamed over the final name; a rename within one file system is atomic, so readers (and DVC)
see either the old output or the complete new one. The temporary name is fixed rather than
random so that the next write of the same output finds and removes what a killed run
(``kill -9``, power loss) left behind, instead of piling up hidden folders.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Errors of the storage itself: reported as "could not write <output>", whatever the call that
# met them (numpy, PIL, json, pandas and torch all write through the OS).
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES}


class OutputWriteError(OSError):
    """An output could not be written; the message names it and the OS error, on one line."""


def temporary_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The temporary name an output is written under, and the name its previous version
    takes while being replaced (both hidden siblings of ``path``)."""
    final = Path(path)
    return final.with_name(f".{final.name}.tmp"), final.with_name(f".{final.name}.old")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` only if the block succeeds.

    With ``directory=True`` the temporary path is an empty folder and a previous folder at
    ``path`` is replaced as a whole, so no stale file from an earlier run survives in it.
    Leftovers of a killed earlier write are removed first. An error of the storage (disk full,
    file too large, read-only) becomes an :class:`OutputWriteError` naming ``path``.
    """
    final = Path(path)
    tmp, old = temporary_paths(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        _remove(old)
        if directory:
            tmp.mkdir()
        else:
            tmp.touch()
    except OSError as err:
        raise _write_error(final, err) from None
    try:
        yield tmp
        if directory and final.exists():
            final.rename(old)
            tmp.rename(final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except OSError as err:
        if err.errno in STORAGE_ERRORS:
            raise _write_error(final, err) from None
        raise
    finally:
        _remove(tmp)


def _write_error(final: Path, err: OSError) -> OutputWriteError:
    error = OutputWriteError(f"{final}: could not write ({err.strerror or err})")
    error.errno = err.errno
    return error


def empty_directory(path: str | os.PathLike) -> None:
    """Replace ``path`` by an empty folder, atomically: the output of a stage that has nothing
    to write (an affinity stage when ``refine.method`` needs no affinity), emptied of what an
    earlier run left in it."""
    with atomic_path(path, directory=True):
        pass


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
