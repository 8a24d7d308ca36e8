"""The DVC stages: one Typer command per module, each a thin recipe over the ``destseg`` library.

The checkout's own ``src`` goes first on the import path, so a stage always runs the library
code next to it, also inside the temporary copies that ``dvc exp run`` makes, whatever copy of
the package is installed.
"""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
