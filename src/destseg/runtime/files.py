"""Atomic writes: a killed process never leaves an output that looks complete, and a stage
never destroys what it did not write.

Every output is first written under a temporary name in the same folder, ``.<name>.tmp``, then
renamed over the final name; a rename within one file system is atomic, so readers (and DVC)
see either the old output or the complete new one. The temporary name is fixed rather than
random so that the next write of the same output finds and removes what a killed run
(``kill -9``, power loss) left behind, instead of piling up hidden folders; two runs writing
the same folder at once are kept apart by a lock (``.<name>.lock``, held while the folder is
written), so the second fails at once instead of deleting the first's temporary.

A folder output carries a marker file (:data:`MARKER`) naming the stage that wrote it, and an
existing folder is replaced only if it is empty or its marker names the same stage: ``--out``
pointed at a folder of notes, at the dataset, or at another stage's output is refused before
anything is written. (DVC ignores the marker, see .dvcignore, so it changes no hash; DVC itself
deletes a stage's outputs before running it, and a folder it restored has no marker.) A link at
the output path is written through: the folder it points to is replaced, the link stays.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

# Errors of the storage itself: reported as "could not write <output>", whatever the call that
# met them (numpy, PIL, json, pandas and torch all write through the OS).
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES}


class OutputWriteError(OSError):
    """An output could not be written; the message names it and the OS error, on one line."""


class OutputRefused(ValueError):
    """The output path holds something the stage may not replace, or another run is writing
    it; the message names the path."""


# The file inside every folder output that names the stage that wrote it.
MARKER = ".destseg-output"


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


def check_output(path: str | os.PathLike, owner: str | None = None) -> Path:
    """Where an output at ``path`` is written (through a link), refused in one line unless the
    stage may write there: a file output (``owner`` None) must not be an existing folder; a
    folder output of stage ``owner`` must be absent, an empty folder or a folder whose marker
    names ``owner``. Stages call this for every output before any work."""
    given = Path(path)
    final = given.resolve() if given.is_symlink() else given
    if owner is None:
        if final.is_dir():
            raise OutputRefused(f"{given}: a folder; this output is a file, give a file path")
        return final
    if not final.exists():
        return final
    if not final.is_dir():
        raise OutputRefused(f"{given}: an existing file; this output is a folder")
    marker = final / MARKER
    written_by = marker.read_text().strip() if marker.is_file() else None
    if written_by != owner and any(final.iterdir()):
        found = f"the {written_by} stage's output" if written_by else "not a folder it wrote"
        raise OutputRefused(
            f"{given}: {found}; the {owner} stage replaces only its own output folder. Move it "
            "away or choose another path (a folder DVC restored: dvc repro replaces it)"
        )
    return final


@contextmanager
def _locked(final: Path) -> Iterator[None]:
    """Hold the lock of output ``final`` (``.<name>.lock`` beside it) for the block, or fail
    at once if another run holds it. The lock file is removed when released; a run that
    opened it just before is sent back to open it again (its inode is no longer the path's)."""
    lock = final.with_name(f".{final.name}.lock")
    while True:
        handle = open(lock, "a")  # noqa: SIM115  (closed below, on every path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputRefused(
                f"{final}: another run is writing it (lock {lock}); wait for it to finish or "
                "choose another path"
            ) from None
        try:
            if lock.exists() and os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        handle.close()


@contextmanager
def atomic_path(
    path: str | os.PathLike, directory: bool = False, owner: str | None = None
) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` only if the block succeeds.

    With ``directory=True`` the temporary path is an empty folder holding the marker of stage
    ``owner`` (required), and a previous folder at ``path`` is replaced as a whole, so no stale
    file from an earlier run survives in it; the output is checked first
    (:func:`check_output`) and locked while it is written. Leftovers of a killed earlier write
    are removed first. An error of the storage (disk full, file too large, read-only) becomes
    an :class:`OutputWriteError` naming ``path``.
    """
    if directory and not owner:
        raise ValueError("a folder output needs the owner that marks it")
    final = check_output(path, owner if directory else None)
    with ExitStack() as stack:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _write_error(final, err) from None
        if directory:
            stack.enter_context(_locked(final))
            check_output(path, owner)  # again, now that no other run can write it
        yield stack.enter_context(_replacing(final, directory, owner))


@contextmanager
def _replacing(final: Path, directory: bool, owner: str | None) -> Iterator[Path]:
    tmp, old = temporary_paths(final)
    try:
        _remove(tmp)
        _remove(old)
        if directory:
            tmp.mkdir()
            (tmp / MARKER).write_text(f"{owner}\n")
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


def empty_directory(path: str | os.PathLike, owner: str) -> None:
    """Replace ``path`` by an empty folder (but for its marker), atomically: the output of
    stage ``owner`` when it has nothing to write (an affinity stage when ``refine.method``
    needs no affinity), emptied of what an earlier run left in it."""
    with atomic_path(path, directory=True, owner=owner):
        pass


def mark_output(path: str | os.PathLike, owner: str) -> None:
    """Mark the folder ``path``, written by a library that knows nothing of markers (DVCLive's
    plots), as stage ``owner``'s output."""
    (Path(path) / MARKER).write_text(f"{owner}\n")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
