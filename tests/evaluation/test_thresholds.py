"""Thresholds chosen on splits.tune: the choice itself, and the stages that make it."""

import importlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_params
from typer.testing import CliRunner

from destseg.cam.store import save_cam
from destseg.dataset.layout import load_mask
from destseg.evaluation.thresholds import (
    SWEEP_THRESHOLDS,
    ThresholdPolicy,
    best_threshold,
    candidates,
)
from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, save_model

runner = CliRunner()


@pytest.fixture(autouse=True)
def _outputs_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _invoke(stage, params, *args):
    module = importlib.import_module(f"stages.{stage}")
    return runner.invoke(module.app, ["--params", str(params), *args])


def test_best_threshold_is_the_highest_miou_and_the_lowest_threshold_of_a_tie():
    table = pd.DataFrame({"threshold": [0.1, 0.2, 0.3, 0.4], "miou": [0.5, 0.7, 0.7, 0.6]})
    assert best_threshold(table) == 0.2
    assert best_threshold(table.iloc[::-1]) == 0.2  # whatever the order of the rows
    with pytest.raises(ValueError, match="no threshold"):
        best_threshold(table.iloc[:0])


def test_candidates_are_the_grid_plus_a_fixed_threshold():
    assert candidates() == sorted(SWEEP_THRESHOLDS.tolist())
    assert candidates(0.33) == sorted([*SWEEP_THRESHOLDS.tolist(), 0.33])
    assert candidates(0.25).count(0.25) == 1


TUNING = pd.DataFrame({"threshold": [0.3, 0.4, 0.5], "miou": [0.5, 0.8, 0.6]})


def test_auto_takes_the_best_threshold_on_the_tuning_images_and_its_score():
    policy = ThresholdPolicy("cam.threshold", "auto")
    assert policy.auto and policy.fixed is None and policy.needs_tuning == "cam.threshold"
    assert policy.choose(TUNING) == (0.4, {"tune_miou": 0.8})
    assert policy.sweep() == policy.tuning_sweep() == candidates()
    assert policy.described() == "tuned on splits.tune"
    with pytest.raises(ValueError, match=r"cam\.threshold: auto needs the scores"):
        policy.choose(None)


def test_a_number_is_kept_and_only_scored_on_the_tuning_images():
    policy = ThresholdPolicy("refine.bg_threshold", 0.5)
    assert not policy.auto and policy.fixed == 0.5 and policy.needs_tuning is None
    assert policy.choose(TUNING) == (0.5, {"tune_miou": 0.6})  # not the better 0.4
    assert policy.choose(None) == (0.5, {})  # no tuning list: nothing to report
    assert policy.sweep() == candidates(0.5) and policy.tuning_sweep() == [0.5]
    assert policy.described() == "refine.bg_threshold"


def _propagated(layout, folder, tune, levels):
    """CAMs that are ``levels[...][0]`` on every labelled object and ``[1]`` elsewhere: for
    the tune images (0.6, 0.42) every threshold in [0.45, 0.55] is perfect; for the reported
    ones (0.9, 0.62) only those in [0.65, 0.85] are."""
    folder.mkdir()
    for image_id in layout.ids("train"):
        mask = load_mask(layout.mask_path(image_id))
        high, low = levels["tune" if image_id in tune else "report"]
        classes = layout.labels[image_id]
        cam = np.stack([np.where(mask == c, high, low) for c in classes]).astype(np.float32)
        save_cam(folder / f"{image_id}.npz", classes, cam)


def _refine(tmp_path, tiny_layout, **overrides):
    tune = set(tiny_layout.ids("tune"))
    levels = {"tune": (0.6, 0.42), "report": (0.9, 0.62)}
    _propagated(tiny_layout, tmp_path / "walked", tune, levels)
    params = write_params(tmp_path, **{"refine.method": "affinity", **overrides})
    metrics = tmp_path / "refine.json"
    result = _invoke(
        "refine",
        params,
        *("--dataset", str(tiny_layout.root), "--propagated", str(tmp_path / "walked")),
        *("--out", str(tmp_path / "pseudo"), "--metrics", str(metrics)),
    )
    return result, metrics


def test_refine_auto_chooses_the_threshold_on_the_tune_images_only(tmp_path, tiny_layout):
    result, metrics = _refine(tmp_path, tiny_layout)
    assert result.exit_code == 0, result.output
    scores = json.loads(metrics.read_text())
    # the best on tune (lowest of the perfect 0.45..0.55), not the reported images' 0.65..0.85
    assert scores["bg_threshold"] == 0.45 and scores["tune_miou"] == pytest.approx(1.0)
    assert scores["miou"] < 0.9  # at 0.45 the reported images' background counts as object
    assert "tuned on splits.tune" in result.output


def test_refine_scores_a_fixed_threshold_on_tune_too(tmp_path, tiny_layout):
    result, metrics = _refine(tmp_path, tiny_layout, **{"refine.propagated_bg_threshold": 0.7})
    assert result.exit_code == 0, result.output
    scores = json.loads(metrics.read_text())
    assert scores["bg_threshold"] == 0.7 and scores["miou"] == pytest.approx(1.0)
    assert scores["tune_miou"] < 0.9


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"splits.tune": None}, "refine.propagated_bg_threshold: auto needs splits.tune"),
        ({"splits.tune": "train"}, "splits.tune: 9 images of"),
        ({"splits.tune": "val"}, "are not in splits.train (train)"),
    ],
)
def test_refine_refuses_auto_without_a_fair_tuning_list(tmp_path, tiny_layout, overrides, expected):
    result, metrics = _refine(tmp_path, tiny_layout, **overrides)
    assert result.exit_code == 1 and expected in result.stderr, result.output
    assert result.stderr.count("\n") == 1 and not metrics.exists()


def test_make_cam_reports_at_the_threshold_best_on_tune(tmp_path, tiny_layout):
    config = {"backbone": "resnet18", "num_classes": 3, "output_stride": 16}
    torch.manual_seed(0)
    save_model(tmp_path / "cls.pt", build_model(Classifier, config), config)
    params = write_params(tmp_path, device="cpu", **{"cam.scales": [1.0], "cam.flip": False})
    metrics, sweep = tmp_path / "cam.json", tmp_path / "sweep.csv"
    result = _invoke(
        "make_cam",
        params,
        *("--dataset", str(tiny_layout.root), "--model", str(tmp_path / "cls.pt")),
        *("--recam", str(tmp_path)),  # no ReCAM model.pt in it: --model makes the CAMs
        *("--out", str(tmp_path / "cam"), "--metrics", str(metrics), "--sweep-plot", str(sweep)),
    )
    assert result.exit_code == 0, result.output
    scores, table = json.loads(metrics.read_text()), pd.read_csv(sweep)
    tuned = best_threshold(table[["threshold", "tune_miou"]].rename(columns={"tune_miou": "miou"}))
    row = table[table["threshold"] == scores["threshold"]].iloc[0]
    assert scores["threshold"] == tuned
    assert scores["miou"] == pytest.approx(row["miou"], abs=1e-6)
    assert scores["tune_miou"] == pytest.approx(row["tune_miou"], abs=1e-6)
    assert scores["oracle_miou"] == pytest.approx(table["miou"].max(), abs=1e-6)
