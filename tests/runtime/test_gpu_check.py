"""benchmarks/gpu_check.py at toy size on the CPU, so that the GPU check cannot rot unseen."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
from conftest import ROOT
from typer.testing import CliRunner

sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check


@pytest.mark.e2e
def test_the_probes_run_every_network_and_inference_step_at_toy_size(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--toy", "--skip-pipeline",
         "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["toy"] and summary["device"] == "cpu"
    for amp in gpu_check.AMPS:
        for network in ("classifier (LDM + MDC)", "AffinityNet", "segmenter"):
            probe = summary["probes"][f"{network}, amp {amp}"]
            assert probe["seconds_per_step"] > 0 and probe["hours_for_the_configuration"] > 0
        inference = summary["probes"][f"inference, amp {amp}"]
        assert set(inference) == {
            f"{name} seconds per image"
            for name in ("CAM", "walk", "evaluation", "CPU: threshold sweep", "CPU: CAM file")
        }
    assert "AffinityNet, amp bf16" in (tmp_path / "log.txt").read_text()
    # two gloo ranks on one device trained the weights of one process with accumulate 2
    shared = summary["shared_device"]
    assert shared["largest_weight_change"] > 1e-4  # moved far above float32 rounding (1e-7)
    assert shared["within_tolerance"] and shared["relative"] < gpu_check.SHARED_DEVICE_TOLERANCE
    assert gpu_check.failures(summary) == []


def test_a_failed_comparison_is_named():
    summary = {
        "shared_device": {"within_tolerance": False, "relative": 0.4},
        "pipeline": {
            "off": {"differ_under_torchrun": {"make_cam": [], "evaluate": []}},
            "bf16": {"differ_under_torchrun": {"make_cam": ["cam/a.npz"], "evaluate": []}},
        },
    }
    assert gpu_check.failures(summary) == [
        "two ranks sharing the device differ from accumulate 2 by 40.00% of the weights' change "
        "(tolerance 1%)",
        "amp bf16: make_cam under torchrun differs in ['cam/a.npz']",
    ]


def test_stage_times_are_read_from_dvc_repro(tmp_path):
    """Each stage's time runs from DVC's announcement of it to the next one's."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1"}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, env=env, check=True)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  first:\n    cmd: sleep 0.3 && echo a > a.txt\n    outs: [a.txt]\n"
        "  second:\n    cmd: cat a.txt > b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
    )
    stages = gpu_check.timed_repro(tmp_path, env)
    assert list(stages) == ["first", "second"] and stages["first"] >= 0.3
    (tmp_path / "dvc.yaml").write_text("stages:\n  broken:\n    cmd: exit 3\n")
    with pytest.raises(RuntimeError, match="dvc repro failed"):
        gpu_check.timed_repro(tmp_path, env)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "error: no GPU to check (device 'auto' is cpu): the full-size probes take"),
        (["--device", "cuda"], "error: device 'cuda' was asked for but CUDA is not available"),
        (["--toy", "--out", "{file}"], "an existing file; --out is a folder for summary.json"),
    ],
    ids=["no-gpu", "cuda-absent", "out-a-file"],
)
def test_the_check_refuses_in_one_line_where_it_cannot_run(tmp_path, args, expected):
    if torch.cuda.is_available() and "--out" not in args:
        pytest.skip("refused only where no GPU is visible; this machine has one")
    (tmp_path / "file").write_text("notes")
    args = [a.format(file=tmp_path / "file") for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    command = typer.Typer()
    command.command()(gpu_check.main)  # the script's command, in this process
    done = CliRunner().invoke(command, args)
    assert done.exit_code == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert (tmp_path / "file").read_text() == "notes" and not (tmp_path / "out").exists()


def test_the_pipeline_check_trains_at_the_shipped_crops():
    sys.path.insert(0, str(ROOT / "tests"))
    from pipeline_repo import toy_training

    overrides = gpu_check.shipped_crops(toy_training())
    assert not [key for key in overrides if key.endswith("crop_size")]
    assert overrides["cls.epochs"] == 1  # the rest of the toy sizes stay
