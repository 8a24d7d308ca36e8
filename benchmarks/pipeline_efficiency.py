"""Benchmark: how close the pipeline's engines come to the work they wrap.

Four ratios, each from one run of the current params on a reproduced pipeline (``data/``):

* training: images per second of train_cls's real loop (DataLoader, augmentation, loss,
  backward, step) over those of the same steps on one batch already in memory (>= 0.85 means
  the loader is never the bottleneck);
* make_cam: the time of ``generate_cams`` (image loading, scales, flips, upsampling, files,
  scoring) over that of the network's forward passes alone on the same inputs (<= 1.3);
* propagate: the time of ``propagate_cams`` (image and CAM files, AffinityNet, the walk, files)
  over that of AffinityNet's forward pass and the walk alone on the same inputs in memory
  (<= 1.3);
* refine: the time of the refine labelling (CAM files, probabilities, CRF, PNGs, scoring, worker
  processes) over pydensecrf's own time for the same images, run one by one in this process,
  divided by the workers (<= 1.25).

    python benchmarks/pipeline_efficiency.py [--images 40] [--steps 12]

Run it alone: another torch process on the same cores distorts every number.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
import typer
import yaml
from torch.utils.data import DataLoader, DistributedSampler

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from destseg.affinity.propagation import propagate_cams  # noqa: E402
from destseg.affinity.walk import _pair_structure, propagate_cam  # noqa: E402
from destseg.cam.generate import generate_cams, size_batches  # noqa: E402
from destseg.cam.store import load_cam  # noqa: E402
from destseg.cam.strided import rescale_image  # noqa: E402
from destseg.dataset.layout import VOCLayout, image_size, load_image  # noqa: E402
from destseg.dataset.torch_dataset import VOCDataset, image_to_tensor, train_transform  # noqa: E402
from destseg.models.affinity_net import AffinityNet  # noqa: E402
from destseg.models.classifier import Classifier  # noqa: E402
from destseg.models.model_file import build_model, load_model  # noqa: E402
from destseg.refine.crf import DenseCRF  # noqa: E402
from destseg.refine.labellers import cam_probabilities  # noqa: E402
from destseg.refine.labelling import label_split  # noqa: E402
from destseg.runtime.device import deterministic  # noqa: E402
from destseg.training.loop import build_optimizer  # noqa: E402
from destseg.training.sampling import EpochSampler, SeededSamples  # noqa: E402
from stages.params.cam import CamParams  # noqa: E402
from stages.params.cls import ClsParams  # noqa: E402
from stages.params.propagate import PropagateParams  # noqa: E402
from stages.params.refine import RefineParams  # noqa: E402
from stages.refine import labeller  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_ratio(config: dict, layout: VOCLayout, steps: int) -> tuple[float, float, float]:
    """(real images/s, in-memory images/s, ratio) over ``steps`` steps after one warm-up."""
    p = ClsParams.model_validate(config["cls"])
    model_config = {
        "backbone": p.backbone,
        "num_classes": len(layout.classes) - 1,
        "output_stride": p.output_stride,
        **p.variant(),
    }
    model = build_model(Classifier, model_config, pretrained=False).train()
    optimizer = build_optimizer(
        p.optimizer, model.param_groups(p.lr, p.head_lr_mult, p.weight_decay), p.momentum
    )
    dataset = VOCDataset(
        layout, layout.ids(config["splits"]["train"]),
        train_transform(p.crop_size, p.scale_range, p.color_jitter),
    )  # fmt: skip

    def step(batch: dict) -> None:
        logits = model(batch["image"], seeds=batch["seed"])  # per-image LDM seeds, as fit's
        loss = F.multilabel_soft_margin_loss(logits, batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # fit's loader: items seeded per image, indices from a DistributedSampler with the epoch
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, seed=0)
    loader = DataLoader(
        SeededSamples(dataset, seed=0),
        batch_size=p.batch_size,
        sampler=EpochSampler(sampler),
        drop_last=True,
        num_workers=p.workers,
    )
    batches = iter(loader)
    held = next(batches)
    step(held)  # warm-up

    def real() -> None:
        for _ in range(steps):
            step(next(batches))

    def in_memory() -> None:
        for _ in range(steps):
            step(held)

    real_rate = steps * p.batch_size / _timed(real)
    memory_rate = steps * p.batch_size / _timed(in_memory)
    return real_rate, memory_rate, real_rate / memory_rate


def make_cam_ratio(config: dict, layout: VOCLayout, ids: list[str], model_path: Path):
    """(make_cam seconds, forward seconds, ratio) on ``ids``."""
    p = CamParams.model_validate(config["cam"])
    model, _ = load_model(model_path, Classifier, torch.device("cpu"))
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as out:
        full = _timed(
            lambda: generate_cams(
                model,
                layout,
                ids,
                sweeps={},
                scales=p.scales,
                flip=p.flip,
                device=cpu,
                out_dir=Path(out),
                batch_size=p.batch_size,
            )
        )
    inputs = []  # the same batches of images of one size (cam.batch_size), scales and flips
    for batch in size_batches(ids, lambda i: image_size(layout.image_path(i)), p.batch_size):
        images = torch.stack([image_to_tensor(load_image(layout.image_path(i))) for i in batch])
        for scale in p.scales:
            x = rescale_image(images, scale)
            inputs.append(torch.cat([x, x.flip(-1)]) if p.flip else x)

    @torch.no_grad()
    def forwards() -> None:
        for x in inputs:
            model.cam(x)

    forward = _timed(forwards)
    return full, forward, full / forward


def propagate_ratio(config: dict, layout: VOCLayout, ids: list[str], data: Path):
    """(propagate seconds, network + walk seconds, ratio) on ``ids``, each the best of
    alternated runs; each run starts without the walk's cached index structures, so both
    build them once per grid size."""
    p = PropagateParams.model_validate(config["propagate"])
    model, _ = load_model(data / "train_aff" / "model.pt", AffinityNet, torch.device("cpu"))
    model.eval()

    def stage() -> None:
        _pair_structure.cache_clear()
        with tempfile.TemporaryDirectory() as out:
            propagate_cams(
                model, layout, ids, cam_dir=data / "cam", out_dir=Path(out), beta=p.beta,
                exp_times=p.exp_times, normalize=p.normalize, device=torch.device("cpu"),
                progress=False,
            )  # fmt: skip

    inputs = []
    for image_id in ids:
        image = image_to_tensor(load_image(layout.image_path(image_id)))
        size = tuple(image.shape[-2:])
        _, cam = load_cam(data / "cam" / f"{image_id}.npz", len(layout.classes), size)
        inputs.append((image, torch.from_numpy(cam)))

    @torch.no_grad()
    def work() -> None:
        for image, cam in inputs:
            affinity = model(image[None])[0].float()
            with deterministic():  # as propagate_cams runs the walk
                propagate_cam(
                    cam, affinity, model.radius, p.beta, p.exp_times, model.feature_stride,
                    p.normalize,
                )  # fmt: skip

    def alone() -> None:
        _pair_structure.cache_clear()
        work()

    # alternated, the best of two each: the first forward passes of a process are slower
    # (oneDNN builds its kernels), whichever loop runs them
    runs = [(_timed(stage), _timed(alone)) for _ in range(2)]
    full, alone_seconds = (min(times) for times in zip(*runs, strict=True))
    return full, alone_seconds, full / alone_seconds


def refine_ratio(config: dict, layout: VOCLayout, ids: list[str], data: Path, threshold: float):
    """(refine seconds, pydensecrf seconds / workers, ratio) on ``ids``."""
    p = RefineParams.model_validate(config["refine"])
    if p.method == "affinity":
        raise typer.BadParameter("refine.method affinity runs no CRF: nothing to compare")
    source = data / ("propagated_cam" if p.method == "affinity+crf" else "cam")
    label = partial(labeller(p), bg_threshold=threshold)
    with tempfile.TemporaryDirectory() as out:
        full = _timed(
            lambda: label_split(
                layout,
                ids,
                set(ids),
                cam_dir=source,
                out_dir=Path(out),
                labeller=label,
                workers=p.workers,
                description="refine",
            )
        )
    crf = DenseCRF(**p.crf.model_dump())  # the CRF the refine labeller runs
    crf_seconds = 0.0
    for image_id in ids:
        _, cam = load_cam(source / f"{image_id}.npz")
        image = load_image(layout.image_path(image_id))
        probs = cam_probabilities(cam, threshold)
        crf_seconds += _timed(lambda image=image, probs=probs: crf(image, probs))
    own = crf_seconds / max(1, min(p.workers, len(ids)))
    return full, own, full / own


def main(
    params: Annotated[Path, typer.Option(help="The run's params file.")] = Path("params.yaml"),
    data: Annotated[Path, typer.Option(help="The run's data folder.")] = Path("data"),
    images: Annotated[int, typer.Option(help="Images for make_cam and refine.")] = 40,
    steps: Annotated[int, typer.Option(help="Training steps timed.")] = 12,
) -> None:
    config = yaml.safe_load(params.read_text())
    layout = VOCLayout(data / "dataset")
    ids = layout.ids(config["splits"]["train"])[:images]
    threshold = yaml.safe_load((data / "metrics" / "refine.json").read_text())["bg_threshold"]
    print(f"{torch.get_num_threads()} torch threads, refine.workers {config['refine']['workers']}")
    real, memory, ratio = training_ratio(config, layout, steps)
    print(f"train_cls: {real:.1f} images/s real, {memory:.1f} in memory: ratio {ratio:.3f}")
    full, forward, ratio = make_cam_ratio(config, layout, ids, data / "train_cls" / "model.pt")
    print(f"make_cam: {full:.2f} s, forwards {forward:.2f} s: ratio {ratio:.3f}")
    if (data / "train_aff" / "model.pt").is_file():
        full, alone, ratio = propagate_ratio(config, layout, ids, data)
        print(f"propagate: {full:.2f} s, network + walk {alone:.2f} s: ratio {ratio:.3f}")
    full, own, ratio = refine_ratio(config, layout, ids, data, threshold)
    print(f"refine: {full:.2f} s, pydensecrf / workers {own:.2f} s: ratio {ratio:.3f}")


if __name__ == "__main__":
    typer.run(main)
