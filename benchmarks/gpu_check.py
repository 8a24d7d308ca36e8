"""One command that exercises the CUDA paths of configs/voc2012.yaml and writes what it measured.

    python benchmarks/gpu_check.py --out gpu_check          # on a GPU machine: a few minutes
    python benchmarks/gpu_check.py --toy --out /tmp/check   # at toy size, on any machine

Three parts on the device (``--device``, default cuda when present), the first two with ``amp`` off
and bf16:

1. **Probes with random weights at the configuration's sizes**: seconds per training step and
   peak memory of the LDM + MDC classifier, AffinityNet and the segmenter (each at its
   ``crop_size`` and ``batch_size``), extrapolated to the configuration's steps on VOC's
   train_aug (10,582 images); and per image of VOC's size (500 x 375): the multi-scale CAM, the
   random walk and the multi-scale evaluation on the device, against the CPU work beside them
   (the threshold sweep and the compressed CAM file).
2. **The pipeline through the real stage commands** (``dvc repro`` of the configuration, as
   the test suite runs it: VOC-shaped archives served on 127.0.0.1, one epoch of each network),
   every stage exiting 0, with its wall time; then make_cam and evaluate run again, plainly and
   under ``torchrun --nproc-per-node 1``, whose outputs must be byte-identical (the process
   group, the sharding and the gathering change no result).
3. **Two processes sharing one device against one process with ``accumulate: 2``**: the
   configuration's classifier trained a few steps by the real loop (``fit``), once as two gloo
   ranks on the same GPU under DistributedDataParallel and once as one process whose batch is
   split into two micro-batches; the weights must agree to within 1 % of how far the steps moved
   them (gradient averaging across processes is the same sum as accumulation; a lost or doubled
   all-reduce moves them by tens of percent). Batch norm runs on fixed statistics here: gloo
   cannot gather SyncBatchNorm's statistics on a GPU, and half batches would normalise
   differently from a whole one anyway.

It writes ``<out>/summary.json`` and ``<out>/log.txt``. ``--toy`` shrinks every size so that the
suite runs the same code on the CPU (tests/runtime/test_gpu_check.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
import typer
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from destseg.affinity.pairs import affinity_loss, training_pairs  # noqa: E402
from destseg.affinity.walk import propagate_cam  # noqa: E402
from destseg.cam.generate import ThresholdSweep, multiscale_cams  # noqa: E402
from destseg.cam.store import save_cam  # noqa: E402
from destseg.evaluation.inference import segment  # noqa: E402
from destseg.evaluation.thresholds import candidates  # noqa: E402
from destseg.models.affinity_net import AffinityNet  # noqa: E402
from destseg.models.classifier import Classifier  # noqa: E402
from destseg.models.freezing import fix_batch_norm  # noqa: E402
from destseg.models.segmenter import Segmenter  # noqa: E402
from destseg.runtime.device import Precision, resolve_device, resolve_precision  # noqa: E402
from destseg.runtime.distributed import World  # noqa: E402
from destseg.training.loop import Schedule, fit  # noqa: E402
from stages.cli import InputError, reported  # noqa: E402
from stages.params.cls import ClsParams  # noqa: E402

CONFIG = ROOT / "configs" / "voc2012.yaml"
TRAIN_AUG = 10_582  # VOC 2012 train + SBD, the images every network trains on
VOC_IMAGE = (375, 500)  # height, width of VOC's most common image
AMPS = ("off", "bf16")
# Two ranks sharing a device against accumulation: the largest weight difference over the
# largest weight change the steps made (float32 sums in another order: far below this).
SHARED_DEVICE_TOLERANCE = 0.01


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``fn`` after one warm-up call (cuDNN's algorithm search); with
    ``repeats`` 0 (toy sizes: the code runs, the number is not read), the one call's time."""
    start = time.perf_counter()
    fn()
    _sync(device)
    if repeats == 0:
        return time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _peak(device: torch.device, fn) -> float | None:
    """GiB of device memory at the peak of ``fn`` (None on the CPU, where torch keeps no count)."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device) / 2**30


def networks(config: dict, toy: bool) -> dict:
    """Per network: (model, loss of a batch, a random batch maker, batch size, epochs)."""
    cls = ClsParams.model_validate(config["cls"])
    aff, seg = config["aff"], config["seg"]
    crop = {name: 64 if toy else config[name]["crop_size"] for name in ("cls", "aff", "seg")}
    batch = {name: 2 if toy else config[name]["batch_size"] for name in ("cls", "aff", "seg")}
    # toy: the code runs, the numbers are not read. ResNet-10 instead of the configuration's
    # ResNet-50s (a sixth of the compute; bf16 on a CPU without it in hardware is emulated, and
    # ResNet-50 took minutes a probe at one thread), and a grid of 2 (7 needs at least 7 pixels
    # per cell side at the encoder's stride)
    backbone = {name: "resnet10" if toy else config[name]["backbone"] for name in crop}
    if toy:
        cls = cls.model_copy(update={"ldm": cls.ldm.model_copy(update={"grid": 2})})
    variant = cls.variant()
    classifier = Classifier(backbone["cls"], 20, False, cls.output_stride, **variant)
    affinity = AffinityNet(
        backbone["aff"], False, aff["output_stride"], aff["feature_stride"], aff["radius"]
    )
    segmenter = Segmenter(backbone["seg"], 21, False, seg["output_stride"])

    def images(name: str) -> torch.Tensor:
        return torch.randn(batch[name], 3, crop[name], crop[name])

    def masks(name: str) -> torch.Tensor:
        labels = torch.randint(0, 21, (batch[name], 1, crop[name] // 16, crop[name] // 16))
        labels = F.interpolate(labels.float(), size=(crop[name],) * 2, mode="nearest")
        return labels[:, 0].long()

    def cls_loss(model, b):
        return F.multilabel_soft_margin_loss(
            model(b["image"], seeds=b["seed"]).float(), b["target"]
        )

    def aff_loss(model, b):
        out = model(b["image"])
        return affinity_loss(out, training_pairs(aff["radius"], out, b["mask"]))["total"]

    def seg_loss(model, b):
        return F.cross_entropy(model(b["image"]).float(), b["mask"], ignore_index=255)

    return {
        "classifier (LDM + MDC)": (
            classifier,
            cls_loss,
            lambda: {
                "image": images("cls"),
                "target": (torch.rand(batch["cls"], 20) > 0.8).float(),
                "seed": torch.arange(batch["cls"]),
            },
            batch["cls"],
            cls.epochs,
        ),
        "AffinityNet": (
            affinity,
            aff_loss,
            lambda: {"image": images("aff"), "mask": masks("aff")},
            batch["aff"],
            aff["epochs"],
        ),
        "segmenter": (
            segmenter,
            seg_loss,
            lambda: {"image": images("seg"), "mask": masks("seg")},
            batch["seg"],
            seg["epochs"],
        ),
    }


def training_probe(model, loss_fn, make_batch, precision: Precision, repeats: int) -> dict:
    """Seconds per step and peak GiB of one optimiser step at ``precision``."""
    device = precision.device
    model = precision.place(model.train())
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = {k: v.to(device) for k, v in make_batch().items()}
    if precision.channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    scaler = precision.scaler()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = loss_fn(model, batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    peak = _peak(device, step)
    return {"seconds_per_step": _timed(step, device, repeats), "peak_gib": peak}


@torch.no_grad()
def inference_probe(config: dict, nets: dict, precision: Precision, toy: bool, repeats: int):
    """Per image of VOC's size: CAM, walk and evaluation on the device; the CPU work beside."""
    device = precision.device
    height, width = (75, 100) if toy else VOC_IMAGE
    image = torch.randn(3, height, width, device=device)
    classifier = precision.place(nets["classifier (LDM + MDC)"][0].eval())
    affinity = precision.place(nets["AffinityNet"][0].eval())
    segmenter = precision.place(nets["segmenter"][0].eval())
    cam_cfg, prop, ev = config["cam"], config["propagate"], config["evaluate"]
    exp_times = 2 if toy else prop["exp_times"]
    # toy: one scale each (bf16 on a CPU without it costs 2 to 5 s an image at every scale)
    cam_scales, eval_scales = (
        (cam_cfg["scales"][:1], ev["scales"][:1]) if toy else (cam_cfg["scales"], ev["scales"])
    )
    holder = {}

    def cam() -> None:
        with precision.autocast():
            holder["cam"] = multiscale_cams(
                classifier, image[None], [[3, 7]], cam_scales, cam_cfg["flip"]
            )[0]

    def walk() -> None:
        with precision.autocast():
            aff = affinity(image[None])[0].float()
        holder["walked"] = propagate_cam(
            holder["cam"].float(), aff, affinity.radius, prop["beta"], exp_times,
            affinity.feature_stride, prop["normalize"],
        )  # fmt: skip

    def evaluate() -> None:
        with precision.autocast():
            segment(segmenter, image, eval_scales, ev["flip"]).argmax(0).cpu()

    timings = {name: _timed(fn, device, repeats) for name, fn in [("CAM", cam), ("walk", walk)]}
    timings["evaluation"] = _timed(evaluate, device, repeats)
    cam_np = holder["cam"].float().cpu().numpy()
    gt = np.random.default_rng(0).integers(0, 21, (height, width))
    sweep = ThresholdSweep(21, candidates())
    timings["CPU: threshold sweep"] = _timed(
        lambda: sweep.update(gt, cam_np, np.array([3, 7])), torch.device("cpu"), repeats
    )
    with tempfile.TemporaryDirectory() as folder:
        timings["CPU: CAM file"] = _timed(
            lambda: save_cam(Path(folder) / "a.npz", [3, 7], cam_np), torch.device("cpu"), repeats
        )
    return {f"{name} seconds per image": value for name, value in timings.items()}


def probes(config: dict, device: torch.device, toy: bool, log) -> dict:
    results = {}
    repeats = 0 if toy else 5  # toy: the code runs, the number is not read
    for amp in AMPS:
        precision = resolve_precision(amp, device)
        nets = networks(config, toy)
        for name, (model, loss_fn, make_batch, batch, epochs) in nets.items():
            probe = training_probe(model, loss_fn, make_batch, precision, repeats)
            steps = epochs * (TRAIN_AUG // batch)
            probe["hours_for_the_configuration"] = probe["seconds_per_step"] * steps / 3600
            results[f"{name}, amp {amp}"] = probe
            log(f"{name}, amp {amp}: {json.dumps(probe)}")
        per_image = inference_probe(config, nets, precision, toy, repeats)
        results[f"inference, amp {amp}"] = per_image
        log(f"inference, amp {amp}: {json.dumps(per_image)}")
    return results


STAGE = re.compile(r"Running stage '(\w+)'")


def timed_repro(repo: Path, env: dict) -> dict[str, float]:
    """``dvc repro`` in ``repo``; each stage's seconds, from DVC's announcement of it to the
    next (or to the end). Stops with DVC's output if it fails."""
    process = subprocess.Popen(
        ["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    stages, current, since, output = {}, None, time.perf_counter(), []
    for line in process.stdout:
        output.append(line)
        match = STAGE.search(line)
        if match:
            now = time.perf_counter()
            if current:
                stages[current] = now - since
            current, since = match[1], now
    if process.wait() != 0:
        raise RuntimeError("dvc repro failed:\n" + "".join(output[-40:]))
    if current:
        stages[current] = time.perf_counter() - since
    return stages


# The outputs of each stage compared under torchrun (option, name in the run's folder).
TORCHRUN_OUTPUTS = {
    "make_cam": {"--out": "cam", "--metrics": "m.json", "--sweep-plot": "sweep.csv"},
    "evaluate": {
        "--predictions": "predictions",
        "--metrics": "m.json",
        "--per-class": "c.csv",
        "--per-image": "i.csv",
    },
}


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".destseg-output"
    }


def same_under_torchrun(
    repo: Path, env: dict, work: Path, stages: tuple[str, ...] = tuple(TORCHRUN_OUTPUTS)
) -> dict[str, list[str]]:
    """Run ``stages`` (make_cam and evaluate) of the reproduced ``repo`` twice, as a plain
    process and as the one process of ``torchrun --standalone --nproc-per-node 1``, each
    writing into its own folder under ``work``; per stage, the output files whose bytes differ
    (none, when the distributed path changes nothing). A run that fails stops with its error."""
    differing = {}
    for stage in stages:
        outputs = TORCHRUN_OUTPUTS[stage]
        runs = []
        for launcher in (
            [],
            ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"],
        ):
            folder = work / stage / ("torchrun" if launcher else "plain")
            folder.mkdir(parents=True)
            args = [x for option, name in outputs.items() for x in (option, str(folder / name))]
            done = subprocess.run(
                [sys.executable, *launcher, "-m", f"stages.{stage}", *args],
                cwd=repo, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"{stage} {' '.join(launcher)} failed:\n{done.stderr[-3000:]}")
            runs.append(_outputs(folder))
        plain, under = runs
        if plain.keys() != under.keys() or not plain:
            raise RuntimeError(
                f"{stage}: {sorted(plain)} written plainly, {sorted(under)} under torchrun"
            )
        differing[stage] = [name for name in plain if plain[name] != under[name]]
    return differing


def shipped_crops(overrides: dict) -> dict:
    """The suite's toy overrides without its crops of 128: on a GPU the check is of the crops
    the configuration will train at."""
    return {key: value for key, value in overrides.items() if not key.endswith(".crop_size")}


def pipeline(device: torch.device, amp: str, log) -> dict:
    """The configuration through ``dvc repro`` on VOC-shaped data (the suite's end-to-end run
    with images at half VOC's size and the shipped crops, on ``device`` at ``amp``), every
    stage's wall time."""
    sys.path.insert(0, str(ROOT / "tests"))
    from http_server import LocalServer, Served
    from pipeline.test_e2e_voc import voc_overrides
    from pipeline_repo import prepare_repo
    from voc_archives import VOC_SIZES_HALF, voc_shaped_archives

    archives = voc_shaped_archives(VOC_SIZES_HALF)
    with tempfile.TemporaryDirectory() as work:
        repo = Path(work)
        served = Served(files={"/voc.tar": archives.voc, "/sbd.tgz": archives.sbd})
        with LocalServer(served) as url:
            overrides = shipped_crops(
                voc_overrides(url, str(repo / "downloads"), archives.voc, archives.sbd)
            )
            overrides |= {"gallery.ids": archives.voc_train, "device": str(device), "amp": amp}
            env = prepare_repo(repo, overrides, base=CONFIG)
            stages = timed_repro(repo, env)
        log(f"pipeline on {device}, amp {amp}: {json.dumps(stages)}")
        differing = same_under_torchrun(repo, env, repo / "torchrun_check")
    log(f"torchrun with one process, amp {amp}: files that differ from the plain run {differing}")
    return {"stage_seconds": stages, "differ_under_torchrun": differing}


class RandomImages(torch.utils.data.Dataset):
    """Images and labels drawn from torch's generator, which the training loop seeds per item
    (``SeededSamples``): every process and every micro-batch sees the same image for an index."""

    def __init__(self, count: int, crop: int, classes: int):
        self.count, self.crop, self.classes = count, crop, classes

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        target = (torch.rand(self.classes) < 0.2).float()
        target[index % self.classes] = 1.0  # at least one class present
        image = torch.randn(3, self.crop, self.crop)
        return {"image": image, "target": target, "id": str(index)}


def _sizes(config: dict, toy: bool) -> tuple[int, int, int]:
    """Crop, batch and steps of the shared-device comparison."""
    return (64, 4, 2) if toy else (config["cls"]["crop_size"], config["cls"]["batch_size"], 2)


def _classifier_steps(
    config: dict, toy: bool, device: torch.device, world: World, accumulate: int, work: Path
) -> dict[str, torch.Tensor]:
    """The configuration's classifier, from one seed, after a few SGD steps of ``fit`` in
    ``world``; its weights on the CPU."""
    crop, batch, steps = _sizes(config, toy)
    torch.manual_seed(0)
    model = networks(config, toy)["classifier (LDM + MDC)"][0]
    fix_batch_norm(model)

    def loss(network, b, _progress):
        logits = network(b["image"], seeds=b["seed"])
        return F.multilabel_soft_margin_loss(logits.float(), b["target"])

    fit(
        model,
        RandomImages(batch * steps, crop, 20),
        loss,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        schedule=Schedule(1, batch, seed=3, accumulate=accumulate),
        precision=Precision(device),
        checkpoint=work / f"checkpoint_{world.rank}_{accumulate}.pt",
        fingerprint="shared device",
        world=world,
    )
    return {name: value.cpu() for name, value in model.state_dict().items()}


def _shared_device_rank(rank: int, port: int, config: dict, toy: bool, device: str, work: Path):
    """One of two gloo ranks that put their model on the same ``device``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads() // 2))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        world = World(rank, 2, 0, torch.device("cpu"))  # the loop's sums go through gloo on the CPU
        weights = _classifier_steps(config, toy, torch.device(device), world, 1, work)
        if world.main:
            torch.save(weights, work / "two_ranks.pt")
    finally:
        dist.destroy_process_group()


def shared_device(config: dict, device: torch.device, toy: bool, work: Path, log) -> dict:
    """Two gloo ranks on ``device`` against one process with ``accumulate: 2`` (part 3)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = (port, config, toy, str(device), work)
    if device.type == "cuda":  # the probes' cached blocks go back to the GPU for the two ranks
        torch.cuda.empty_cache()
    mp.start_processes(_shared_device_rank, args=args, nprocs=2, start_method="spawn")
    two = torch.load(work / "two_ranks.pt", weights_only=True)
    accumulated = _classifier_steps(config, toy, device, World(), 2, work)
    torch.manual_seed(0)
    initial = networks(config, toy)["classifier (LDM + MDC)"][0].state_dict()
    floats = [name for name, value in initial.items() if value.is_floating_point()]
    difference = max((two[n] - accumulated[n]).abs().max().item() for n in floats)
    moved = max((accumulated[n] - initial[n]).abs().max().item() for n in floats)
    result = {
        "largest_weight_difference": difference,
        "largest_weight_change": moved,
        "relative": difference / moved,
        "within_tolerance": difference <= SHARED_DEVICE_TOLERANCE * moved,
    }
    log(f"two ranks sharing {device} against accumulate 2: {json.dumps(result)}")
    return result


@reported
def main(
    out: Annotated[Path, typer.Option(help="Folder for summary.json and log.txt.")],
    device: Annotated[
        str, typer.Option(help="auto (cuda when present), cpu, cuda, cuda:N")
    ] = "auto",
    toy: Annotated[bool, typer.Option(help="Toy sizes, for a CPU test of this script.")] = False,
    skip_pipeline: Annotated[
        bool, typer.Option(help="Only the probes and the shared-device comparison.")
    ] = False,
) -> None:
    torch.manual_seed(0)
    chosen = resolve_device(device)
    if chosen.type != "cuda" and not toy:
        raise InputError(
            f"no GPU to check (device {device!r} is {chosen}): the full-size probes take gigabytes "
            "and hours on a CPU; --toy runs this script at toy size on any machine"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: an existing file; --out is a folder for summary.json and log.txt")
    out.mkdir(parents=True, exist_ok=True)
    lines = io.StringIO()

    def log(line: str) -> None:
        print(line, flush=True)
        lines.write(line + "\n")

    config = yaml.safe_load(CONFIG.read_text())
    name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else "cpu"
    summary = {"device": name, "torch": torch.__version__, "toy": toy}
    summary["probes"] = probes(config, chosen, toy, log)
    with tempfile.TemporaryDirectory() as work:
        summary["shared_device"] = shared_device(config, chosen, toy, Path(work), log)
    if not skip_pipeline:
        summary["pipeline"] = {amp: pipeline(chosen, amp, log) for amp in AMPS}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "log.txt").write_text(lines.getvalue())
    failed = failures(summary)
    if failed:
        print("\n".join(f"FAILED: {line}" for line in failed), file=sys.stderr)
        raise typer.Exit(1)


def failures(summary: dict) -> list[str]:
    """What in ``summary`` is not as expected (the probes only measure; these compare)."""
    failed = []
    shared = summary["shared_device"]
    if not shared["within_tolerance"]:
        failed.append(
            f"two ranks sharing the device differ from accumulate 2 by {shared['relative']:.2%} "
            f"of the weights' change (tolerance {SHARED_DEVICE_TOLERANCE:.0%})"
        )
    for amp, run in summary.get("pipeline", {}).items():
        for stage, files in run["differ_under_torchrun"].items():
            if files:
                failed.append(f"amp {amp}: {stage} under torchrun differs in {files}")
    return failed


if __name__ == "__main__":
    typer.run(main)
