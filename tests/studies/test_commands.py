"""Every study is one command, `python -m studies.<name>`, run from the repository."""

import importlib
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
