"""Reading one section of params.yaml against its schema, with one-line errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

S = TypeVar("S", bound=BaseModel)


class ParamsError(ValueError):
    """The params file or one of its values is unusable; the message names the key."""


# Every top-level key of params.yaml: the run's settings and one section per stage. A key not
# here is a slip (``sead: 5``) that would otherwise be ignored silently.
TOP_LEVEL_KEYS = (
    "seed",
    "device",
    "amp",
    "dist",
    "data",
    "splits",
    "pretrain",
    "cls",
    "recam",
    "cam",
    "aff_labels",
    "aff",
    "propagate",
    "refine",
    "seg",
    "evaluate",
    "gallery",
)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one,
    so the first edit would be ignored without a word) and any alias (``*name``): a few
    kilobytes of nested aliases expand to gigabytes (the "billion laughs"), and no params
    file needs one. It reads ``1e-3`` as the number it is, as DVC's YAML 1.2 reader does
    (PyYAML's YAML 1.1 wants ``1.0e-3`` and would hand the schema a string)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"alias *{str(event.anchor)[:40]} refused: params files take no aliases (a few "
                "nested ones expand to gigabytes); write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)

# An input echoed in an error is cut to this many characters: a value may be megabytes long.
_ECHOED = 80


def _echo(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _ECHOED else f"{text[:_ECHOED]}... ({len(text)} characters)"


def _yaml_error(path: Path, err: yaml.YAMLError) -> ParamsError:
    """One line naming the place: line and column (from 1) and YAML's description."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or err.__class__.__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return ParamsError(f"{path}: not valid YAML{where}: {problem}")


def read_params(path: Path, key: str | None, schema: type[S]) -> S:
    """Validate section ``key`` of the params file (the top level when ``key`` is None)."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        params = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # a SafeLoader
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a text file") from None
    if not isinstance(params, dict):
        raise ParamsError(
            f"{path}: expected a mapping of sections (seed:, cls:, ...), got a "
            f"{type(params).__name__}"
        )
    unknown = [name for name in params if name not in TOP_LEVEL_KEYS]
    if unknown:
        raise ParamsError(
            f"{path}: unknown top-level key {unknown[0]!r} (known: {', '.join(TOP_LEVEL_KEYS)})"
        )
    if key is None:
        data = {name: params.get(name) for name in schema.model_fields}
    elif key not in params:
        raise ParamsError(f"{path}: section '{key}' is missing")
    else:
        data = params[key]
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in ((key,) if key else ()) + tuple(first["loc"]))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] != "value_error":  # a type or range error: show what was given
            message += f" (got {_echo(first.get('input'))})"
        raise ParamsError(f"{path}: {where}: {message}") from None
