"""Stages under bad input and faults, as a hostile but fair user meets them: every refusal is
one line naming the file or param, comes before any work, and leaves earlier outputs alone."""

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, listed, write_params
from typer.testing import CliRunner

from destseg.cam.store import save_cam
from destseg.dataset.layout import VOCLayout
from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, save_model
from destseg.models.segmenter import Segmenter

runner = CliRunner()
pytestmark = pytest.mark.bad_input


@pytest.fixture(autouse=True)
def _outputs_outside_the_repository(tmp_path, monkeypatch):
    """A stage's default outputs (data/...) are relative to the working directory: a stage
    that wrongly ran on would write them under tmp_path, never into the repository."""
    monkeypatch.chdir(tmp_path)


def _invoke(stage, params, *args):
    return runner.invoke(
        importlib.import_module(f"stages.{stage}").app, ["--params", str(params), *args]
    )


def _one_error_line(result) -> str:
    """The stage's stderr, asserted to be one line and no traceback."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("stage", "override", "expected"),
    [
        (
            "train_cls",
            {"cls.ldm.grid": 40, "cls.crop_size": 32},
            "cls: ldm.grid (40) is larger than crop_size (32)",
        ),
        ("train_cls", {"cls.mdc.grid": 9}, "cls: mdc.grid (9) is larger than the 8x8 feature map"),
        (
            "train_cls",
            {"cls.mdc.grid": 5, "cls.output_stride": 32},
            "cls: mdc.grid (5) is larger than the 4x4 feature map",
        ),
        ("train_cls", {"cls.scale_range": [1.3, 0.7]}, "cls.scale_range: the minimum 1.3 exceeds"),
        ("train_seg", {"seg.scale_range": [2.0, 1.0]}, "seg.scale_range: the minimum 2.0 exceeds"),
        ("train_aff", {"aff.scale_range": [2.0, 1.0]}, "aff.scale_range: the minimum 2.0 exceeds"),
        ("train_cls", {"seed": 2**63}, "seed: Input should be less than or equal to"),
        ("prepare", {"data.seed": 2**64}, "data.seed: Input should be less than or equal to"),
        (
            "train_cls",
            {"splits.train": "../../etc"},
            "splits.train: list name '../../etc' is not a plain file name",
        ),
        ("refine", {"splits.score_cams": "a/b"}, "list name 'a/b' is not a plain file name"),
        (
            "train_seg",
            {"seg.accumulate": 3},
            "seg: batch_size (16) does not split into accumulate (3) micro-batches",
        ),
        ("make_cam", {"dist.nproc": 0}, "dist.nproc: Input should be greater than or equal to 1"),
    ],
)
def test_params_are_checked_against_each_other_before_any_work(tmp_path, stage, override, expected):
    where = "--out" if stage == "prepare" else "--dataset"  # never the repository's data/
    result = _invoke(stage, write_params(tmp_path, **override), where, str(tmp_path / "none"))
    assert result.exit_code == 1
    assert expected in _one_error_line(result)


@pytest.mark.parametrize(
    ("text", "found"), [("- seed\n- cls\n", "list"), ("just words\n", "str"), ("3\n", "int")]
)
def test_a_params_file_that_is_not_a_mapping_is_one_line(tmp_path, text, found):
    (tmp_path / "params.yaml").write_text(text)
    result = _invoke("train_cls", tmp_path / "params.yaml")
    assert result.exit_code == 1
    assert f"expected a mapping of sections (seed:, cls:, ...), got a {found}" in _one_error_line(
        result
    )


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_they_start(
    tmp_path, tiny_layout
):
    params = write_params(tmp_path, **{"dist.nproc": 3, "cls.batch_size": 4})
    result = _invoke("train_cls", params, "--dataset", str(tiny_layout.root))
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "batch size 4 does not split into 3 processes x 1 micro-batches" in line
    assert "processes (torchrun)" not in result.output


def test_several_processes_need_the_stage_run_as_its_command(tmp_path, tiny_layout):
    # in-process (here, CliRunner) there is no command line to start again under torchrun
    params = write_params(tmp_path, **{"dist.nproc": 2, "cls.batch_size": 4})
    result = _invoke("train_cls", params, "--dataset", str(tiny_layout.root))
    assert result.exit_code == 1
    assert "dist.nproc: 2 processes run the stage as a command" in _one_error_line(result)


def test_the_classifier_checks_the_later_stages_lists_before_it_trains(tmp_path, tiny_layout):
    params = write_params(tmp_path, **{"splits.score_cams": "scored"})
    out = tmp_path / "model.pt"
    result = _invoke("train_cls", params, "--dataset", str(tiny_layout.root), "--out", str(out))
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "splits.score_cams: " in line and "image list 'scored' not found" in line
    assert not out.exists() and "epoch" not in result.output


def test_validating_on_a_list_without_masks_is_refused_before_training(tmp_path, tiny_layout):
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_layout.root, dataset)
    unmasked = VOCLayout(dataset).ids("val")[1]
    (dataset / "SegmentationClass" / f"{unmasked}.png").unlink()
    params = write_params(tmp_path, **{"seg.labels": "gt", "seg.val_images": 2})
    out = tmp_path / "model.pt"
    result = _invoke("train_seg", params, "--dataset", str(dataset), "--out", str(out))
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "seg.val_every validates on masks, and 1 of the 2 images of splits.val" in line
    assert f"{unmasked}.png" in line and not out.exists()


def test_more_processes_than_gpus_are_refused_before_they_start(monkeypatch):
    from stages.cli import InputError
    from stages.torchrun import run_in_workers

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        InputError, match=r"dist\.nproc: 2 processes need 2 GPUs, and 1 are visible"
    ):
        run_in_workers(2, "stages.train_cls", torch.device("cuda"))


def test_more_processes_than_cpu_cores_are_refused_before_they_start(monkeypatch):
    from stages.cli import InputError
    from stages.torchrun import run_in_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with pytest.raises(InputError, match=r"dist\.nproc: 64 processes on the CPU, and this"):
        run_in_workers(64, "stages.train_cls", torch.device("cpu"))
    with pytest.raises(InputError, match="may use 2 cores"):
        run_in_workers(3, "stages.refine")  # the CRF stages: no device, always the CPU


@pytest.mark.parametrize(
    ("stage", "override", "expected"),
    [
        ("train_cls", {"cls.crop_size": 20000}, "cls.crop_size: Input should be less than or"),
        ("prepare", {"data.synthetic.image_size": 100000}, "data.synthetic.image_size: Input"),
        ("train_cls", {"cls.mdc.grid": 400}, "cls.mdc.grid: Input should be less than or equal"),
        ("train_aff", {"aff.radius": 100000}, "aff.radius: Input should be less than or equal"),
    ],
)
def test_sizes_beyond_what_a_gpu_run_uses_are_refused_before_any_work(
    tmp_path, stage, override, expected
):
    result = _invoke(stage, write_params(tmp_path, **override))
    assert result.exit_code == 1 and expected in _one_error_line(result)


def test_train_cls_refuses_cam_scales_the_mdc_cannot_take_before_training(tmp_path, tiny_layout):
    """Today's default MDC (grid 2, OS16) on 64 px images: scale 0.25 leaves a 1x1 map."""
    params = write_params(tmp_path, **{"cam.scales": [1.0, 0.25]})
    live = tmp_path / "live"
    result = _invoke(
        "train_cls", params, "--dataset", str(tiny_layout.root), "--live-dir", str(live)
    )
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "cam.scales: at scale 0.25 the smallest image (64 px) gives the MDC a 1x1" in line
    assert "cls.mdc.grid (2)" in line and not live.exists()  # refused before training began


def _classifier(path, num_classes, mdc=None):
    config = {"backbone": "resnet18", "num_classes": num_classes, "output_stride": 16, "mdc": mdc}
    torch.manual_seed(0)
    save_model(path, build_model(Classifier, config), config)


def _no_recam(tmp_path: Path) -> Path:
    """The folder of a stage that is off (train_recam, pretrain): empty, so make_cam reads
    --model and train_cls starts as cls.pretrained says."""
    folder = tmp_path / "off"
    folder.mkdir(exist_ok=True)
    return folder


def test_make_cam_refuses_scales_the_models_mdc_cannot_take(tmp_path, tiny_layout):
    mdc = {"grid": 2, "position": 4, "shared": True, "activation": True}
    _classifier(tmp_path / "cls.pt", 3, mdc)
    params = write_params(tmp_path, **{"cam.scales": [0.25], "device": "cpu"})
    out = tmp_path / "cam"
    args = [
        "--dataset",
        str(tiny_layout.root),
        "--model",
        str(tmp_path / "cls.pt"),
        "--out",
        str(out),
        "--recam",
        str(_no_recam(tmp_path)),
    ]
    result = _invoke("make_cam", params, *args, "--metrics", str(tmp_path / "m.json"))
    assert result.exit_code == 1 and "cam.scales: at scale 0.25" in _one_error_line(result)
    assert not out.exists()


def test_make_cam_refuses_a_classifier_of_another_dataset(tmp_path, tiny_layout):
    _classifier(tmp_path / "cls.pt", 5)  # the tiny dataset has 3 classes besides background
    params = write_params(tmp_path, device="cpu")
    args = ["--dataset", str(tiny_layout.root), "--model", str(tmp_path / "cls.pt")]
    args += ["--recam", str(_no_recam(tmp_path))]
    result = _invoke("make_cam", params, *args, "--out", str(tmp_path / "cam"))
    assert result.exit_code == 1
    assert "cls.pt: the model predicts 5 classes, the dataset" in _one_error_line(result)
    assert "needs 3" in result.stderr and not (tmp_path / "cam").exists()


def test_evaluate_refuses_a_segmenter_of_another_dataset(tmp_path, tiny_layout):
    config = {"backbone": "resnet18", "num_classes": 21, "output_stride": 16}
    save_model(tmp_path / "seg.pt", build_model(Segmenter, config), config)
    params = write_params(tmp_path, device="cpu")
    args = ["--dataset", str(tiny_layout.root), "--model", str(tmp_path / "seg.pt")]
    result = _invoke("evaluate", params, *args, "--predictions", str(tmp_path / "pred"))
    assert result.exit_code == 1
    assert "seg.pt: the model predicts 21 classes, the dataset" in _one_error_line(result)
    assert "needs 4" in result.stderr


def test_a_refused_training_keeps_the_metrics_of_the_last_run(tmp_path, tiny_layout):
    live = tmp_path / "live"
    live.mkdir()
    (live / "metrics.json").write_text('{"val/map": 0.9}')
    params = write_params(tmp_path, **{"cls.batch_size": 1000})
    result = _invoke(
        "train_cls", params, "--dataset", str(tiny_layout.root), "--live-dir", str(live)
    )
    assert result.exit_code == 1
    assert "batch size 1000 is larger than the 12 training images" in _one_error_line(result)
    assert json.loads((live / "metrics.json").read_text()) == {"val/map": 0.9}


def test_an_unknown_list_name_says_which_lists_exist(tmp_path, tiny_layout):
    params = write_params(tmp_path, **{"splits.train": "train_aug"})
    result = _invoke("train_cls", params, "--dataset", str(tiny_layout.root))
    assert result.exit_code == 1
    assert (
        "image list 'train_aug' not found (the dataset has report, train, tune, val)"
        in _one_error_line(result)
    )


@pytest.fixture
def cams(tmp_path, tiny_layout):
    """Random CAMs of the tiny dataset's train images, and a copy of the dataset to change."""
    layout = VOCLayout(tmp_path / "dataset")
    shutil.copytree(tiny_layout.root, layout.root)
    folder = tmp_path / "cams"
    rng = np.random.default_rng(0)
    for image_id in layout.ids("train"):
        classes = layout.labels[image_id]
        save_cam(
            folder / f"{image_id}.npz", classes, rng.random((len(classes), 64, 64), np.float32)
        )
    return layout, folder


# refine labelling straight away: a fixed threshold and no tuning list to score it on first
FIXED = {"refine.bg_threshold": 0.25, "splits.tune": None}


def _refine_args(tmp_path, layout, cams):
    return [
        "--dataset", str(layout.root), "--cams", str(cams), "--out", str(tmp_path / "pseudo"),
        "--metrics", str(tmp_path / "refine.json"), "--confusion", str(tmp_path / "confusion.png"),
    ]  # fmt: skip


def test_a_repeated_id_is_used_once_with_a_one_line_warning(tmp_path, cams):
    layout, folder = cams
    ids = layout.ids("train")
    layout.write_split("train", [*ids, ids[0], ids[1]])
    params = write_params(tmp_path, **{"refine.method": "crf", "refine.workers": 1, **FIXED})
    command = [sys.executable, "-m", "stages.refine", "--params", str(params)]
    result = subprocess.run(
        [*command, *_refine_args(tmp_path, layout, folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # a subprocess: pytest would catch the warning before the stage prints it
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert "train.txt: 2 repeated ids dropped" in warnings[0]
    assert len(list(listed(tmp_path / "pseudo"))) == len(ids)


def _slow_refine(tmp_path, layout, folder) -> subprocess.Popen:
    """refine in 2 worker processes, slowed down (20,000 CRF iterations an image) so that it
    is still running when it is interrupted, in its own process group like a terminal job, with
    Ctrl-C's default action even when pytest itself runs in the background (where the shell
    starts it with SIGINT ignored, and children inherit that)."""
    params = write_params(
        tmp_path,
        **{"refine.method": "crf", "refine.workers": 2, "refine.crf.iterations": 20_000, **FIXED},
    )
    command = [sys.executable, "-m", "stages.refine", "--params", str(params)]
    return subprocess.Popen(
        [*command, *_refine_args(tmp_path, layout, folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _started(process: subprocess.Popen, tmp_path: Path) -> None:
    """Wait until the stage writes its pseudo-masks (its temporary folder exists), however
    long its imports take on a loaded machine, then a second more for its workers to start."""
    deadline = time.monotonic() + 120
    while not (tmp_path / ".pseudo.tmp").exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    time.sleep(1)
    assert process.poll() is None, process.communicate()


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_an_interrupted_refine_prints_one_line_and_leaves_nothing(tmp_path, cams, signum, status):
    layout, folder = cams
    process = _slow_refine(tmp_path, layout, folder)
    _started(process, tmp_path)
    os.killpg(process.pid, signum)  # what Ctrl-C does to the terminal's foreground job
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status
    assert stderr.strip() == "interrupted: outputs left as they were"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cams", "dataset", "params.yaml"]


def _ended(pid: int) -> bool:
    """Whether process ``pid`` (not a child of this one) has exited: gone, or a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_stage_ends_with_the_dvc_that_ran_it(tmp_path, cams):
    """kill -9 of dvc repro: the stage it ran stops within seconds (as after SIGTERM) instead
    of writing on alone, and leaves no temporary and no lock."""
    layout, folder = cams
    dvc = tmp_path / "bin" / "dvc"  # stands for DVC: runs the stage as DVC does, under its name
    dvc.parent.mkdir()
    dvc.write_text(
        f"#!{sys.executable}\nimport os, subprocess, sys\n"
        "stage = subprocess.Popen(sys.argv[1:], env={**os.environ, 'DVC_STAGE': 'refine'})\n"
        "print(stage.pid, flush=True)\nstage.wait()\n"
    )
    dvc.chmod(0o755)
    params = write_params(
        tmp_path,
        **{"refine.method": "crf", "refine.workers": 1, "refine.crf.iterations": 20_000, **FIXED},
    )
    command = [sys.executable, "-m", "stages.refine", "--params", str(params)]
    runner_process = subprocess.Popen(
        [str(dvc), *command, *_refine_args(tmp_path, layout, folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stage = int(runner_process.stdout.readline())
    _started(runner_process, tmp_path)
    runner_process.kill()
    runner_process.wait()
    deadline = time.monotonic() + 60
    while not _ended(stage) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ended(stage), "the stage outlived the dvc that ran it"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["bin", "cams", "dataset", "params.yaml"], left


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_torchruns_workers_end_with_the_stage_that_started_them(tmp_path, cams):
    """kill -9 of a stage running in 2 processes: its torchrun workers stop within seconds
    instead of writing on alone."""
    layout, folder = cams
    params = write_params(
        tmp_path,
        **{"refine.method": "crf", "refine.workers": 1, "refine.crf.iterations": 20_000,
           "dist.nproc": 2, **FIXED},
    )  # fmt: skip
    command = [sys.executable, "-m", "stages.refine", "--params", str(params)]
    stage = subprocess.Popen(
        [*command, *_refine_args(tmp_path, layout, folder)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _started(stage, tmp_path)
    workers = _children(stage.pid)
    assert len(workers) == 2, workers
    stage.kill()
    stage.wait()
    deadline = time.monotonic() + 60
    while not all(_ended(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_ended(w) for w in workers), "a worker outlived its stage"


def test_a_killed_refine_is_silent_and_its_leftover_is_removed_by_the_next_run(tmp_path, cams):
    layout, folder = cams
    process = _slow_refine(tmp_path, layout, folder)
    _started(process, tmp_path)
    process.kill()  # kill -9 of the stage alone: its workers must not outlive it noisily
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and stderr.strip() == ""
    assert (tmp_path / ".pseudo.tmp").is_dir()
    params = write_params(tmp_path, **{"refine.method": "crf", "refine.workers": 2, **FIXED})
    result = _invoke("refine", params, *_refine_args(tmp_path, layout, folder))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".pseudo.tmp").exists()
    assert len(list(listed(tmp_path / "pseudo"))) == len(layout.ids("train"))


def test_a_full_disk_during_training_is_one_line_naming_the_checkpoint(tmp_path, tiny_layout):
    """Files limited to 1 MiB (RLIMIT_FSIZE): the first checkpoint cannot be written."""
    params = write_params(
        tmp_path,
        **{"cls.epochs": 1, "cls.batch_size": 4, "cls.crop_size": 32, "device": "cpu"},
    )
    checkpoint = tmp_path / "ck" / "train_cls.pt"
    limit = (
        "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); "
        "sys.argv[0] = 'train_cls'; runpy.run_module('stages.train_cls', run_name='__main__')"
    )
    args = [
        "--params",
        str(params),
        "--dataset",
        str(tiny_layout.root),
        "--checkpoint",
        str(checkpoint),
    ]
    args += ["--live-dir", str(tmp_path / "live"), "--out", str(tmp_path / "model.pt")]
    args += ["--pretrain", str(_no_recam(tmp_path))]  # an empty folder: no pretrained encoder
    # Run outside the checkout: DVCLive opens the DVC repository it runs in, and the limit
    # would then also hit that repository's own state files, which grow with its history.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", limit, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {checkpoint}: could not write (File too large)"]
    assert "Traceback" not in result.stderr
    assert not checkpoint.exists() and not (tmp_path / "model.pt").exists()
    assert not checkpoint.parent.exists()  # the folder made for it, empty, is removed too


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_damaged_after_prepare_is_named_in_one_line(tmp_path, tiny_layout, workers):
    """A file truncated after the dataset was checked (a disk error, a bad copy): training
    names it, whether images load in this process or in DataLoader workers."""
    layout = VOCLayout(tmp_path / "dataset")
    shutil.copytree(tiny_layout.root, layout.root)
    damaged = layout.image_path(layout.ids("train")[3])
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    params = write_params(
        tmp_path, **{"cls.workers": workers, "cls.batch_size": 12, "cls.crop_size": 32}
    )
    args = ["--dataset", str(layout.root), "--live-dir", str(tmp_path / "live")]
    result = _invoke("train_cls", params, *args, "--checkpoint", str(tmp_path / "ck.pt"))
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert line.startswith(f"error: {damaged}: not a readable image (image file is truncated")


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("stage", "args", "expected"),
    [
        ("make_cam", ["--out", "{notes}"], "not a folder it wrote; the make_cam stage"),
        ("make_cam", ["--out", "{dataset}"], "the prepare stage's output; the make_cam stage"),
        ("gallery", ["--out", "{file}"], "an existing file; this output is a folder"),
        ("make_cam", ["--metrics", "{notes}"], "a folder; this output is a file"),
        ("refine", ["--out", "{notes}"], "the refine stage replaces only its own"),
        ("evaluate", ["--predictions", "{notes}"], "the evaluate stage replaces only its own"),
        ("prepare", ["--out", "{notes}"], "the prepare stage replaces only its own"),
        ("make_cam", ["--metrics", "{dataset}/labels.json"], "inside {dataset}, the prepare"),
        ("make_cam", ["--sweep-plot", "{summary}"], "an existing file that is not JSON"),
        ("train_cls", ["--out", "{dataset}/labels.json"], "the train_cls stage writes nothing"),
        (
            "train_cls",
            ["--checkpoint", "{notes}/model.pt", "--out", "{notes}/model.pt"],
            "given for two outputs",
        ),
        ("train_seg", ["--out", "{summary}.pt"], "an existing file that is not a torch file"),
        (
            "make_cam",
            ["--out", "{notes}/cam", "--metrics", "{notes}/cam/m.json"],
            "inside the output folder",
        ),
        ("train_cls", ["--out", "{file}/model.pt"], "file.txt is a file, not a folder to"),
        ("make_cam", ["--out", "{loop}"], "loop: a link that leads nowhere (a loop of links)"),
    ],
)
def test_a_stage_refuses_outputs_it_did_not_write_before_any_work(
    tmp_path, tiny_layout, stage, args, expected
):
    """--out at a folder of the user's notes, at the dataset, at a file; --metrics at a folder:
    one line, nothing replaced, and nothing else written either (the check comes first)."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work")
    (tmp_path / "file.txt").write_text("a file of the user's")
    (tmp_path / "summary.json").write_text("what I found, in words")
    (tmp_path / "summary.json.pt").write_text("what I found, in words")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_layout.root, dataset)
    (dataset / ".destseg-output").write_text("prepare\n")
    places = {
        "notes": notes,
        "dataset": dataset,
        "file": tmp_path / "file.txt",
        "summary": tmp_path / "summary.json",
        "loop": tmp_path / "loop",
    }
    args = [a.format(**places) for a in args]
    expected = expected.format(**places)
    if stage != "prepare":
        args += ["--dataset", str(dataset)]
    params = write_params(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    result = _invoke(stage, params, *args)
    assert result.exit_code == 1
    assert expected in _one_error_line(result)
    assert (notes / "thesis.tex").read_text() == "years of work"
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.bad_input
def test_a_second_run_on_the_same_model_file_fails_before_training(tmp_path, tiny_layout):
    """Two train_cls runs on one model.pt: the second is refused at once (the first holds the
    lock of every output from its start), and the first's file is left as it is."""
    model = tmp_path / "model.pt"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from destseg.runtime.files import hold_lock; hold_lock(sys.argv[2]);"
         "print('held', flush=True); time.sleep(60)",
         str(ROOT / "src"), str(model)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        params = write_params(tmp_path)
        result = _invoke("train_cls", params, "--dataset", str(tiny_layout.root), "--out", model)
        assert result.exit_code == 1
        assert "another run is writing it" in _one_error_line(result)
        assert not model.exists() and not (tmp_path / "data" / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.bad_input
def test_a_failed_last_output_leaves_every_output_of_the_previous_run(tmp_path, tiny_layout):
    """make_cam's metrics cannot be written (the disk filled up after the CAMs): the CAM
    folder, the metrics and the sweep all stay the previous run's, and nothing is left over."""
    _classifier(tmp_path / "cls.pt", 3)
    params = write_params(tmp_path, **{"cam.scales": [1.0], "cam.flip": False, "device": "cpu"})
    outputs = {"--out": tmp_path / "cam", "--metrics": tmp_path / "m.json"}
    outputs["--sweep-plot"] = tmp_path / "sweep.csv"
    args = ["--dataset", str(tiny_layout.root), "--model", str(tmp_path / "cls.pt")]
    args += ["--recam", str(_no_recam(tmp_path))]
    args += [str(a) for option, path in outputs.items() for a in (option, path)]
    assert _invoke("make_cam", params, *args).exit_code == 0
    previous = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    mdc = {"grid": 2, "position": 4, "shared": True, "activation": True}
    _classifier(tmp_path / "cls.pt", 3, mdc)  # other weights, other CAMs

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    module = importlib.import_module("stages.make_cam")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "write_json", full_disk)
        result = _invoke("make_cam", params, *args)
    assert result.exit_code == 1 and "No space left on device" in _one_error_line(result)
    previous[tmp_path / "cls.pt"] = (tmp_path / "cls.pt").read_bytes()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == previous


def test_an_output_path_with_rich_markup_is_printed_as_written(tmp_path):
    """``ds[/]x`` is a folder name like any other: written, and named as it is."""
    small = {"train_images": 4, "val_images": 2, "image_size": 32}
    params = write_params(tmp_path, **{f"data.synthetic.{k}": v for k, v in small.items()})
    out = tmp_path / "ds[" / "]x"
    result = _invoke("prepare", params, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in result.output and (out / "ImageSets").is_dir()


def test_a_full_disk_under_the_live_metrics_names_their_folder(tmp_path, tiny_layout):
    """DVCLive writes its files itself, and its error names none: the stage names the folder."""
    from dvclive import Live

    class FullDisk(Live):
        def next_step(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    params = write_params(
        tmp_path, **{"cls.epochs": 1, "cls.batch_size": 4, "cls.crop_size": 32, "device": "cpu"}
    )
    live = tmp_path / "live"
    args = ["--dataset", str(tiny_layout.root), "--live-dir", str(live)]
    args += ["--out", str(tmp_path / "m.pt"), "--pretrain", str(_no_recam(tmp_path))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("stages.recipe.Live", FullDisk)
        result = _invoke("train_cls", params, *args)
    assert result.exit_code == 1
    assert _one_error_line(result) == f"error: {live}: could not write (No space left on device)"
    assert not (tmp_path / "m.pt").exists()
