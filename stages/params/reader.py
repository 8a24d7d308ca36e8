"""Reading one section of params.yaml against its schema, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

S = TypeVar("S", bound=BaseModel)


class ParamsError(ValueError):
    """The params file or one of its values is unusable; the message names the key."""


def read_params(path: Path, key: str | None, schema: type[S]) -> S:
    """Validate section ``key`` of the params file (the top level when ``key`` is None)."""
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path}: not a text file") from None
    if not isinstance(params, dict):
        raise ParamsError(
            f"{path}: expected a mapping of sections (seed:, cls:, ...), got a "
            f"{type(params).__name__}"
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
            message += f" (got {first.get('input')!r})"
        raise ParamsError(f"{path}: {where}: {message}") from None
