"""The summary stage: the six headline numbers copied from the stages' metrics files (its run in
the pipeline: tests/pipeline/test_e2e.py)."""

import json

import pytest
from typer.testing import CliRunner

from stages import summary

METRICS = {
    "classifier": {"val": {"map": 0.8, "f1": 0.7}, "step": 3},
    "cams": {"miou": 0.4, "threshold": 0.5},
    "masks": {"miou": 0.45, "bg_threshold": 0.3},
    "segmenter": {"miou": 0.35},
}


def _run(tmp_path, **metrics):
    args = []
    for option, data in {**METRICS, **metrics}.items():
        path = tmp_path / f"{option}.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        args += [f"--{option}", str(path)]
    return CliRunner().invoke(summary.app, [*args, "--out", str(tmp_path / "summary.json")])


def test_the_numbers_are_copied_under_their_own_names(tmp_path):
    result = _run(tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "cls_map": 0.8,
        "cam_miou": 0.4,
        "cam_thr": 0.5,
        "mask_miou": 0.45,
        "mask_thr": 0.3,
        "seg_miou": 0.35,
    }
    assert "seg_miou" in result.output and "0.3500" in result.output


def test_a_number_its_stage_did_not_write_is_null_and_said(tmp_path):
    result = _run(tmp_path, masks={})  # e.g. refine scoring nothing
    assert result.exit_code == 0, result.output
    numbers = json.loads((tmp_path / "summary.json").read_text())
    assert numbers["mask_miou"] is None and numbers["mask_thr"] is None
    assert "not scored" in result.output


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"cams": "{not json"}, "cams.json: not a metrics JSON file"),
        ({"cams": "[1, 2]"}, "cams.json: not a metrics JSON file (a list)"),
        ({"segmenter": {"miou": "high"}}, "segmenter.json: miou is 'high', not a number"),
    ],
)
def test_a_damaged_metrics_file_is_one_line_and_nothing_written(tmp_path, metrics, message):
    result = _run(tmp_path, **metrics)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.bad_input
def test_a_missing_metrics_file_names_it(tmp_path):
    _run(tmp_path)
    (tmp_path / "cams.json").unlink()
    (tmp_path / "summary.json").unlink()
    args = [f"--{o}" if i % 2 == 0 else str(tmp_path / f"{o}.json")
            for o in METRICS for i in range(2)]  # fmt: skip
    result = CliRunner().invoke(summary.app, [*args, "--out", str(tmp_path / "summary.json")])
    assert result.exit_code == 1 and "cams.json" in result.output and "not found" in result.output
