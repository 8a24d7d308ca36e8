"""Benchmark: what ``destseg predict`` costs per image against the segmenter's bare forward pass.

On the pipeline's own segmenter (``--model``) and the first ``--images`` images of ``splits.val``
of ``--dataset``, in this process, on the CPU with ``torch.set_num_threads(--threads)``:

- the bare forward pass: one ``model(x)`` per image at one scale, without flip;
- ``destseg predict`` with its defaults (one scale, no flip) and with the demo's evaluate
  recipe (scales 1.0, 0.5, 1.5 with flip): the whole command's work per image (decoding,
  inference, the label map, the overlay figure, the contact sheet), start-up excluded.

Each is timed ``--repeats`` times and the best is kept (the least disturbed by other load).

    python benchmarks/predict_cost.py [--images 20] [--threads 1]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from destseg.app.predict import write_predictions
from destseg.dataset.layout import VOCLayout, load_image
from destseg.dataset.torch_dataset import image_to_tensor
from destseg.models.model_file import load_model
from destseg.models.segmenter import Segmenter
from destseg.runtime.device import resolve_precision

CPU = torch.device("cpu")


def best_of(repeats: int, work) -> float:
    """The shortest of ``repeats`` timings of ``work()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main(
    model_path: Annotated[Path, typer.Option("--model")] = Path("data/train_seg/model.pt"),
    dataset: Annotated[Path, typer.Option()] = Path("data/dataset"),
    images: Annotated[int, typer.Option(min=1)] = 20,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
) -> None:
    torch.set_num_threads(threads)
    layout = VOCLayout(dataset)
    paths = [layout.image_path(i) for i in layout.ids("val")[:images]]
    model, _ = load_model(model_path, Segmenter, CPU, len(layout.classes))
    tensors = [image_to_tensor(load_image(p))[None] for p in paths]

    def forward() -> None:
        with torch.no_grad():
            for x in tensors:
                model(x)

    rows = {"bare forward pass (one scale, no flip)": best_of(repeats, forward)}
    amp = resolve_precision("off", CPU)
    recipes = {
        "destseg predict, defaults (one scale, no flip)": ([1.0], False),
        "destseg predict --scale 1.0 --scale 0.5 --scale 1.5 --flip": ([1.0, 0.5, 1.5], True),
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name, (scales, flip) in recipes.items():
            out = Path(scratch) / "out"

            def predict(scales=scales, flip=flip, out=out) -> None:
                with torch.no_grad():
                    write_predictions(model, paths, out, layout.classes, scales, flip, None, amp)

            rows[name] = best_of(repeats, predict)
    bare = rows["bare forward pass (one scale, no flip)"]
    print(f"{len(paths)} images of {dataset}, {threads} thread(s), best of {repeats}\n")
    print("| what | ms per image | images/s | x bare forward |")
    print("|---|---|---|---|")
    for name, seconds in rows.items():
        per_image = seconds / len(paths)
        print(f"| {name} | {1000 * per_image:.1f} | {1 / per_image:.1f} | {seconds / bare:.1f} |")


if __name__ == "__main__":
    typer.run(main)
