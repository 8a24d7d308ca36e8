"""The ``destseg`` command (``[project.scripts]`` in pyproject.toml; ``python -m destseg`` too).

Each subcommand is a module of this package; every one reports the user's mistakes as one line
and refuses to write over files it did not write, as the pipeline's stages do
(:mod:`destseg.runtime.shell`).
"""

from __future__ import annotations

import typer

from destseg.app import export, info, predict
from destseg.runtime.shell import reported

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Segment new images with a trained segmenter, export it, read a model file.",
)
for name, module in (("predict", predict), ("export", export), ("info", info)):
    app.command(name)(reported(module.main))


def main() -> None:
    """The console script's entry point."""
    app(prog_name="destseg")
