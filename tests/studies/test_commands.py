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
