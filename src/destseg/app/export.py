"""``destseg export``: the segmenter in TorchScript and ONNX, each checked before it is written.

    destseg export --out exported                   # both formats
    destseg export --format torchscript --check photos/

writes into ``--out`` (replaced only if this command wrote it):

- ``segmenter.torchscript.pt``: ``torch.jit.load`` it (or libtorch in C++), no project code
  needed. torch 2.14 marks TorchScript deprecated in favour of ``torch.export`` (its
  FutureWarnings are silenced here); the file is still what libtorch and most serving tools
  load;
- ``segmenter.onnx``: for ONNX Runtime and the like (the ``onnx`` extra:
  ``pip install -e ".[onnx]"``), input ``image`` (N, 3, H, W), output ``logits`` (N, C, H, W),
  batch, height and width free;
- ``segmenter.json``: what a user of either needs: the class names (background first, index
  order), the input normalisation (RGB scaled to [0, 1], then ImageNet's mean and standard
  deviation) and the network's config.

Both take a normalised image of any size of at least 32 pixels a side and return logits at its
size; the label map is their argmax over classes: one scale without flip (what ``destseg
predict`` gives with its defaults). Before a file is written, the export runs on the
``--check`` images (files or folders; without them, two random images of different shapes) and
its logits are compared with the segmenter's own: the largest difference is printed and an export
that differs by more than ``--tolerance`` or labels one pixel otherwise is refused.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from destseg.app.predict import DatasetOption, ModelOption, class_names, image_files
from destseg.dataset.layout import load_image
from destseg.dataset.torch_dataset import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor
from destseg.models.model_file import load_model
from destseg.models.segmenter import Segmenter
from destseg.runtime.files import atomic_path
from destseg.runtime.shell import InputError, check_outputs

# the sides of the example traced and of the random check images: a landscape and a portrait
EXAMPLE = (96, 128)
RANDOM_CHECKS = ((80, 60), (64, 112))
MIN_SIDE = 32  # smaller inputs pool to nothing in the backbone


def check_inputs(paths: list[Path]) -> list[torch.Tensor]:
    """The normalised images (1, 3, H, W) to check an export on: those of ``paths`` (files, and
    the files of folders, taken as ``destseg predict`` takes them: other files named in a warning),
    or two seeded random ones of different shapes."""
    if not paths:
        generator = torch.Generator().manual_seed(0)
        return [torch.randn(1, 3, h, w, generator=generator) for h, w in RANDOM_CHECKS]
    return [image_to_tensor(load_image(p))[None] for p in image_files(paths)]


def to_torchscript(model: torch.nn.Module, path: Path) -> None:
    """Trace ``model`` into ``path``. The trace records the sizes it reads as operations, so the
    file takes other sizes than the example's (the checks run on other sizes)."""
    # the tracer's notes on those size reads, and torch 2.14's deprecation of TorchScript
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, torch.zeros(1, 3, *EXAMPLE))
    traced.save(str(path))


def to_onnx(model: torch.nn.Module, path: Path) -> None:
    """Export ``model`` with torch's ONNX exporter, batch, height and width left free."""
    free = {
        0: torch.export.Dim("batch"),
        2: torch.export.Dim("height", min=MIN_SIDE),
        3: torch.export.Dim("width", min=MIN_SIDE),
    }
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, *EXAMPLE),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes={"x": free},
        dynamo=True,
        verbose=False,
    )


def run_torchscript(path: Path):
    with warnings.catch_warnings():  # torch 2.14's deprecation of TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path))
    return lambda image: loaded(image).detach().numpy()


def run_onnx(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda image: session.run(None, {"image": image.numpy()})[0]


EXPORTS = {
    "torchscript": ("segmenter.torchscript.pt", to_torchscript, run_torchscript),
    "onnx": ("segmenter.onnx", to_onnx, run_onnx),
}


def compare(run, model: torch.nn.Module, images: list[torch.Tensor]) -> tuple[float, int]:
    """The largest logit difference between an export and ``model`` over ``images``, and how
    many pixels the two label differently."""
    largest, relabelled = 0.0, 0
    with torch.no_grad():
        for image in images:
            own = model(image).numpy()
            exported = run(image)
            largest = max(largest, float(np.abs(exported - own).max()))
            relabelled += int((exported.argmax(1) != own.argmax(1)).sum())
    return largest, relabelled


def _onnx_available() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise InputError(
            f"--format onnx needs the onnx extra ({err.name} is not installed): "
            "pip install -e '.[onnx]'"
        ) from None


def main(
    model_path: ModelOption = Path("data/train_seg/model.pt"),
    out: Annotated[Path, typer.Option(help="Folder of the exported files.")] = Path("exported"),
    formats: Annotated[
        list[str] | None, typer.Option("--format", help="torchscript or onnx (repeat; both).")
    ] = None,
    check: Annotated[
        list[Path] | None, typer.Option(help="Images to check the export on (files, folders).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest logit difference accepted.", min=0.0)
    ] = 1e-3,
    dataset: DatasetOption = Path("data/dataset"),
) -> None:
    """Export the segmenter in each --format, checked against it on the --check images."""
    chosen = list(dict.fromkeys(formats or ["torchscript", "onnx"]))
    unknown = [name for name in chosen if name not in EXPORTS]
    if unknown:
        raise InputError(f"--format {unknown[0]}: choose torchscript or onnx")
    if "onnx" in chosen:
        _onnx_available()
    check_outputs("export", folders=[out])
    classes = class_names(model_path, dataset)
    model, config = load_model(model_path, Segmenter, torch.device("cpu"), len(classes))
    images = check_inputs(list(check or []))
    small = [tuple(i.shape[-2:]) for i in images if min(i.shape[-2:]) < MIN_SIDE]
    if small:
        raise InputError(f"--check: an image of {small[0]} pixels; each side needs {MIN_SIDE}")
    info = {
        "classes": classes,
        "input": {
            "layout": "N, 3, H, W: RGB, any H and W of at least 32",
            "scale": "pixel values / 255",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "output": "logits N, C, H, W; the label map is their argmax over C",
        "config": config,
    }
    with atomic_path(out, directory=True, owner="export") as tmp:
        for name in chosen:
            file, export, load = EXPORTS[name]
            export(model, tmp / file)
            largest, relabelled = compare(load(tmp / file), model, images)
            print(
                f"{name}: largest logit difference {largest:.2e} on {len(images)} images, "
                f"{relabelled} pixels labelled otherwise (tolerance {tolerance:g})"
            )
            if largest > tolerance or relabelled:
                raise InputError(f"{name}: the export differs from the segmenter; not written")
        (tmp / "segmenter.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"export: {', '.join(EXPORTS[n][0] for n in chosen)} and segmenter.json -> {out}")

