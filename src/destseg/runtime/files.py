"""Atomic writes: a killed process never leaves an output that looks complete, and a stage
never destroys what it did not write.

Every output is first written under a temporary name in the same folder, ``.<name>.tmp``, then
renamed over the final name; a rename within one file system is atomic, so readers (and DVC)
see either the old output or the complete new one. The temporary name is fixed rather than
random so that the next write of the same output finds and removes what a killed run
(``kill -9``, power loss) left behind, instead of piling up hidden folders (and puts back a
previous folder that a kill left under ``.<name>.old``). Two runs writing the same output at
once are kept apart by a lock (``.<name>.lock``): a stage holds the lock of each of its outputs
from its first check to its end (:func:`hold_lock`), so the second run fails at once instead of
working to the end and overwriting the first's. :func:`outputs_together` swaps all of a stage's
outputs in at once, after every one of them is written.

A folder output carries a marker file (:data:`MARKER`) naming the stage that wrote it, and an
existing folder is replaced only if it is empty or its marker names the same stage: ``--out``
pointed at a folder of notes, at the dataset, or at another stage's output is refused before
anything is written. (DVC ignores the marker, see .dvcignore, so it changes no hash; DVC itself
deletes a stage's outputs before running it, and a folder it restored has no marker.) A file
carries no marker: :func:`check_file_output` refuses one inside another stage's folder, or where
the existing file is not what the stage writes there. A link at the output path is written
through: the folder it points to is replaced, the link stays.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

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


def _is_temporary(path: Path) -> bool:
    """Whether ``path`` is named as :func:`temporary_paths` names an output being written."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


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
    try:
        final = given.resolve() if given.is_symlink() else given
    except (OSError, RuntimeError):  # RuntimeError: a loop of links, before Python 3.13
        raise OutputRefused(f"{given}: a link that leads nowhere (a loop of links)") from None
    for folder in Path(os.path.abspath(final)).parents:
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                raise OutputRefused(f"{given}: {folder} is a file, not a folder to write into")
            break
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


def _is_json(path: Path) -> bool:
    if path.stat().st_size > _LARGEST_JSON_OUTPUT:
        return False
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


def _starts_with(signature: bytes) -> Callable[[Path], bool]:
    def check(path: Path) -> bool:
        with open(path, "rb") as handle:
            return handle.read(len(signature)) == signature

    return check


# No metrics or plot file of a stage comes near this; a larger file at a JSON output's path is
# not one of them.
_LARGEST_JSON_OUTPUT = 64 * 2**20
# What an existing file must hold to be replaced by a file output of that suffix: what a stage
# writes there (metrics and plot data, torch files, which torch.save writes as zip archives,
# figures, the export's tarball). Other suffixes (tables in CSV or markdown) are not checked.
_KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    ".json": ("JSON", _is_json),
    ".pt": ("a torch file", zipfile.is_zipfile),
    ".png": ("a PNG", _starts_with(b"\x89PNG\r\n\x1a\n")),
    ".gz": ("a gzip archive", _starts_with(b"\x1f\x8b")),
}


def check_not_inside_another_output(given: str | os.PathLike, final: Path, owner: str) -> None:
    """Refuse an output of stage ``owner`` at ``final`` inside a folder that another stage
    wrote (its marker says so): the dataset, the CAMs."""
    for folder in Path(os.path.abspath(final)).parents:
        marker = folder / MARKER
        if marker.is_file() and (written_by := marker.read_text().strip()) != owner:
            raise OutputRefused(
                f"{given}: inside {folder}, the {written_by} stage's output; the {owner} stage "
                "writes nothing into another stage's folder. Choose another path"
            )


def check_file_output(path: str | os.PathLike, owner: str) -> Path:
    """:func:`check_output` for a file output of stage ``owner``, and what a stage checks
    before it may replace an existing file, which carries no marker: it must lie in no folder
    that another stage wrote (the dataset, the CAMs) and hold what the stage writes there
    (``_KINDS``: JSON for a metrics file, a torch file for a model). So a stage replaces
    neither the dataset's labels nor a text of the user's."""
    final = check_output(path)
    check_not_inside_another_output(path, final, owner)
    kind = _KINDS.get(final.suffix.lower())
    if kind is not None and final.is_file() and not kind[1](final):
        raise OutputRefused(
            f"{path}: an existing file that is not {kind[0]}, so no output of the {owner} stage; "
            "left as it is. Move it away or choose another path"
        )
    return final


def _lock_file(final: Path) -> Path:
    return final.with_name(f".{final.name}.lock")


def _acquire(final: Path) -> IO[str]:
    """Take the lock of output ``final`` (``.<name>.lock`` beside it), or fail at once if
    another run holds it. A run that opened the lock file just before its holder removed it is
    sent back to open it again (its inode is no longer the path's)."""
    lock = _lock_file(final)
    while True:
        handle = open(lock, "a")  # noqa: SIM115  (closed by _release, or below)
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
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def _release(final: Path, handle: IO[str]) -> None:
    _lock_file(final).unlink(missing_ok=True)
    handle.close()


# The outputs whose locks this process holds for a whole stage (hold_lock), by absolute path.
_held: dict[Path, IO[str]] = {}
# The folders hold_lock created to put a lock beside an output, outermost first.
_created: list[Path] = []
# Set by a stage that runs its work in torchrun's workers (distributed.launch) to its own pid:
# it holds its outputs' locks, so a worker it started writes them without taking the lock.
LOCKS_HELD_BY = "DESTSEG_LOCKS_HELD_BY"


def _held_by_parent() -> bool:
    return os.environ.get(LOCKS_HELD_BY) == str(os.getppid())


def _absolute(path: str | os.PathLike) -> Path:
    given = Path(path)
    return Path(os.path.abspath(given.resolve() if given.is_symlink() else given))


def hold_lock(path: str | os.PathLike) -> None:
    """Lock the output at ``path`` (through a link) until :func:`release_locks`: a stage holds
    every output's lock from its first check to its end, so a second run writing the same
    file or folder fails at once, instead of training to the end and overwriting the first's."""
    final = _absolute(path)
    if final in _held:
        return
    missing = [folder for folder in final.parents if not folder.exists()]
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(final, err) from None
    _created.extend(reversed(missing))
    _held[final] = _acquire(final)


def release_locks() -> None:
    """Release every lock :func:`hold_lock` took (the stage ends), and remove the folders it
    created for them that nothing was written into (a refused run leaves no trace)."""
    while _held:
        _release(*_held.popitem())
    while _created:
        with suppress(OSError):
            _created.pop().rmdir()


@contextmanager
def _locked(final: Path) -> Iterator[None]:
    """Hold the lock of output ``final`` for the block, unless the stage holds it already."""
    if _absolute(final) in _held or _held_by_parent():
        yield
        return
    handle = _acquire(final)
    try:
        yield
    finally:
        _release(final, handle)


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
        _restore(final, old)
        _remove(tmp)
        _remove(old)
        if directory:
            tmp.mkdir()
            (tmp / MARKER).write_text(f"{owner}\n")
        else:
            tmp.touch()
    except OSError as err:
        raise _write_error(final, err) from None
    later = False
    try:
        yield tmp
        # swapped in with the stage's other outputs (outputs_together), unless it lies in the
        # temporary folder of another output, which is swapped in as a whole: deferred, a
        # torchrun worker's files there would be renamed after the main process had moved
        # that folder onto its final name
        if _deferred and not _is_temporary(final.parent):
            _deferred[-1].append((final, directory))
            later = True
        else:
            _swap(final, directory)
    except OSError as err:
        if err.errno in STORAGE_ERRORS and not isinstance(err, OutputWriteError):
            raise _write_error(final, err) from None
        raise
    finally:
        if not later:
            _remove(tmp)


def _swap(final: Path, directory: bool) -> None:
    """Move the temporary of ``final`` onto it; a previous folder is moved aside first and
    removed after."""
    tmp, old = temporary_paths(final)
    try:
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


# For each open outputs_together block, the outputs written in it and not yet swapped in.
_deferred: list[list[tuple[Path, bool]]] = []


@contextmanager
def outputs_together() -> Iterator[None]:
    """Swap in every output that :func:`atomic_path` writes in the block together, once the
    block has succeeded: files first, folders last. A stage whose last output fails (a full
    disk under its metrics) then leaves all its previous outputs in place, instead of new CAMs
    beside the previous run's metrics. Swapping is renaming, which takes no space."""
    pending: list[tuple[Path, bool]] = []
    _deferred.append(pending)
    try:
        yield
    except BaseException:
        for final, _ in pending:
            _remove(temporary_paths(final)[0])
        raise
    finally:
        _deferred.pop()
    pending.sort(key=lambda output: output[1])
    try:
        while pending:
            _swap(*pending[0])
            pending.pop(0)
    finally:  # a swap that failed: the rest stay as they were
        for final, _ in pending:
            _remove(temporary_paths(final)[0])


def _restore(final: Path, old: Path) -> None:
    """Put back the previous folder ``old`` that a run killed between the two renames of a
    replace left without its final name, before anything is deleted: otherwise the next run,
    interrupted in turn, would leave neither the previous output nor the new one."""
    if old.is_dir() and not old.is_symlink() and not (final.exists() or final.is_symlink()):
        old.rename(final)


def _write_error(final: Path, err: OSError) -> OutputWriteError:
    error = OutputWriteError(f"{final}: could not write ({err.strerror or err})")
    error.errno = err.errno
    return error


@contextmanager
def naming_storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an error of the storage in the block into an :class:`OutputWriteError` naming
    ``path``: for what a library writes on its own (DVCLive's metrics and curves), whose
    error names no file."""
    try:
        yield
    except OSError as err:
        if err.errno in STORAGE_ERRORS and not isinstance(err, OutputWriteError):
            raise _write_error(Path(path), err) from None
        raise


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
