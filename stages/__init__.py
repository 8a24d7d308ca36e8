"""The DVC stages: one Typer command per module, each a thin recipe over the ``destseg`` library.

The checkout's own ``src`` goes first on the import path, so a stage always runs the library
code next to it, also inside the temporary copies that ``dvc exp run`` makes, whatever copy of
the package is installed.

A stage's own process (``python -m stages.<name>``, also as one of torchrun's) imports torch and
torchvision with the cyclic garbage collector off: their few million objects live until the
process ends, and the collector's passes over them while they are created are wasted (0.6 to
0.9 s per process, measured on a 2-core AMD EPYC: docs/testing.md). :func:`stages.cli.run_stage`
turns it back on once the stage's modules are imported.
"""

import gc
import sys
from itertools import pairwise
from pathlib import Path

if any(a == "-m" and b.startswith("stages.") for a, b in pairwise(sys.orig_argv)):
    gc.disable()

_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
