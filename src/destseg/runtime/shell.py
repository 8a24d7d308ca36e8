"""The shell of every command the project ships (the DVC stages, ``destseg``, the scripts):
one line per expected failure with its exit status, interrupts that clean up, and the checks that
an input exists and that an output may be written, before any work."""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from destseg.runtime.files import (
    LOCKS_HELD_BY,
    check_file_output,
    check_not_inside_another_output,
    check_output,
    hold_lock,
    release_locks,
)
from destseg.runtime.lifeline import dvc_ancestor, end_with
from destseg.runtime.torchrun_env import under_torchrun


class InputError(Exception):
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
        except (InputError, OSError, ValueError, FloatingPointError) as err:
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
            raise InputError(
                f"{given}: given for two outputs of the {owner} stage ({seen[absolute]})"
            )
        seen[absolute] = given
    for file, final in zip(files, where[len(folders) :], strict=True):
        for folder, folder_final in zip(folders, where, strict=False):
            if Path(os.path.abspath(folder_final)) in Path(os.path.abspath(final)).parents:
                raise InputError(
                    f"{file}: inside the output folder {folder}, which the {owner} stage "
                    "replaces as a whole; choose a path outside it"
                )
    if not under_torchrun():
        for final in where:
            hold_lock(final)


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a InputError saying which stage makes it."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    return path
