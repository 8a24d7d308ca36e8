"""Every study is one command, `python -m studies.<name>`, run from the repository."""

import importlib
import os
import subprocess
import sys

import pytest
import typer
from conftest import ROOT
from typer.testing import CliRunner

SINGLE = ["premise_check", "branch_profile", "body_probe", "cam_profile", "bn_statistics"]
SINGLE += ["refine_sweep"]


@pytest.mark.parametrize("name", SINGLE)
def test_each_diagnostic_is_a_command_with_help(name):
    app = typer.Typer()
    app.command()(importlib.import_module(f"studies.{name}").main)
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "--params" in result.output


def test_the_ablation_runs_as_a_module_from_the_repository():
    result = subprocess.run(
        [sys.executable, "-m", "studies.ablation", "collect", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--cam-only" in result.stdout and "--keep" in result.stdout


def test_cam_only_tables_never_overwrite_the_whole_runs_tables():
    from pathlib import Path

    from studies.ablation.__main__ import default_out

    study = Path("data/constellation_ablation")
    whole = {default_out(study, table, False) for table in ("", "profile", "branch_cams")}
    cam = {default_out(study, table, True) for table in ("", "profile", "branch_cams")}
    assert not whole & cam
    assert default_out(study, "profile", True) == Path("data/constellation_ablation_cam_profile")
    assert default_out(study, "", False) == study


def _ablation(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "studies.ablation", *args],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.bad_input
def test_the_ablation_refuses_in_one_line_where_it_cannot_work(tmp_path):
    outside = _ablation("collect", "--study", "controls", cwd=tmp_path)
    assert outside.returncode == 1 and "Traceback" not in outside.stderr
    assert outside.stderr.strip() == (
        f"error: {tmp_path.resolve()}: not inside a DVC repository; run this from the "
        "project's checkout"
    )
    queued = _ablation("queue", "--seeds", "-1", cwd=tmp_path)
    assert queued.returncode == 2 and "seeds are 0 to 2^63 - 1" in queued.stderr
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    empty = _ablation("collect", "--study", "controls", "--cam-only", cwd=tmp_path)
    assert empty.returncode == 1 and "Traceback" not in empty.stderr
    assert empty.stderr.startswith(
        "error: no finished experiment of the controls study (cam-demo-<variant>-seed<N>) in"
    )
