"""Image ids and list names, checked before any of them becomes part of a file path.

An id names files (``JPEGImages/<id>.jpg``, ``data/cam/<id>.npz``, ...), and ids come from list
files that users, mirrors and archives provide: an id like ``../../x`` would read and write
outside the dataset. Every id must therefore be a plain file stem: not empty, no ``/`` or
``\\``, no ``..``, no ``:`` (a drive on Windows), no control characters or line separators,
no leading ``.``, and at most ``MAX_ID_BYTES`` bytes, so that every stage can write its files
(checked once, in prepare, not when make_cam meets a name too long). A list naming the same id
twice would count that image twice in training and scoring; the repeat is dropped with a
warning.
"""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path

# File systems allow 255 bytes a name; the stages add a suffix and, while writing, a hidden
# temporary name around it (``.<id>.npz.tmp``): 200 bytes leave room for both. (VOC's ids take
# 11 bytes, COCO's 27.)
MAX_ID_BYTES = 200
# Unicode categories no id may hold: control characters (which include U+0085, a line break)
# and the line and paragraph separators U+2028 and U+2029, which split a line of a list.
_UNWRITABLE = {"Cc", "Zl", "Zp"}


class IdError(ValueError):
    """An id or a list name that is not a plain file stem; the message says where it is."""


class DuplicateIdWarning(UserWarning):
    """A list names an image more than once; only its first line is kept."""


def id_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a file stem, or None when it can."""
    if not name:
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with white space"
    for bad in ("/", "\\", ":"):
        if bad in name:
            return f"it contains {bad!r}"
    if ".." in name:
        return "it contains '..'"
    if any(unicodedata.category(char) in _UNWRITABLE for char in name):
        return "it contains a control character or a line or paragraph separator"
    if name.startswith("."):
        return "it starts with '.' (a hidden file, and the stages' temporary names start so)"
    if len(name.encode()) > MAX_ID_BYTES:
        size = len(name.encode())
        return f"it takes {size} bytes, more than the {MAX_ID_BYTES} a file name leaves an id"
    return None


def check_id(name: str, where: str = "image id") -> str:
    """``name`` if it is a plain file stem, else an :class:`IdError` naming ``where``."""
    problem = id_problem(name)
    if problem is not None:
        raise IdError(f"{where} {name!r} is not a plain file name: {problem}")
    return name


def read_id_list(path: Path) -> list[str]:
    """The ids of a list file, one per line, in order: surrounding white space stripped, blank
    lines skipped, every id checked (an :class:`IdError` names the file and line), and a repeated
    id dropped with a :class:`DuplicateIdWarning` naming both lines."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    repeats: list[tuple[str, int]] = []
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first id
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise IdError(
            f"{path}: not a text list of ids ({err.reason} at byte {err.start})"
        ) from None
    # lines end at newlines alone: str.splitlines also breaks at U+2028 and U+0085, which would
    # cut one id in two without a word (check_id refuses them instead)
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        check_id(image_id, where=f"{path}:{number}: image id")
        if image_id in first_line:
            repeats.append((image_id, number))
            continue
        first_line[image_id] = number
        ids.append(image_id)
    if repeats:
        image_id, number = repeats[0]
        warnings.warn(
            f"{path}: {len(repeats)} repeated ids dropped (e.g. {image_id!r} on lines "
            f"{first_line[image_id]} and {number})",
            DuplicateIdWarning,
            stacklevel=2,
        )
    return ids
