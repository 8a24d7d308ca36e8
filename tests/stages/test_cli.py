"""The stage commands as a user meets them: --help, and one-line errors for bad input."""

import importlib
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, write_params
from typer.testing import CliRunner

STAGES = [
    "prepare",
    "pretrain",
    "train_cls",
    "train_recam",
    "make_cam",
    "aff_labels",
    "train_aff",
    "propagate",
    "refine",
    "train_seg",
    "evaluate",
]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _outputs_outside_the_repository(tmp_path, monkeypatch):
    """A stage's default outputs (data/...) are relative to the working directory: a stage
    that wrongly ran on would write them under tmp_path, never into the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("stage", STAGES)
def test_help(stage):
    app = importlib.import_module(f"stages.{stage}").app
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--params" in result.output


def test_help_as_a_module_from_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.bad_input
def test_bad_param_value_is_one_line_naming_the_param(tmp_path):
    params = write_params(tmp_path, **{"cls.backbone": "resnet17"})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train_cls",
            "--params",
            str(params),
            "--dataset",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cls.backbone" in lines[0] and "resnet17" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("stage", "override", "expected"),
    [
        ("make_cam", {"cam.threshold": 1.5}, "cam.threshold"),
        ("make_cam", {"cam.threshold": "best"}, "cam.threshold: must be a number between 0 and 1"),
        ("refine", {"refine.bg_threshold": True}, "refine.bg_threshold: must be a number"),
        ("train_seg", {"seg.pretrained": "no"}, "seg.pretrained"),
        ("train_seg", {"seg.labels": "weak"}, "seg.labels"),
        ("refine", {"refine.crf.iterations": 0}, "refine.crf.iterations"),
        ("evaluate", {"evaluate.scales": []}, "evaluate.scales"),
        ("prepare", {"data.synthetic.body_saliency": -1}, "data.synthetic.body_saliency"),
        ("evaluate", {"device": "gpu0"}, "device"),
        ("train_cls", {"cls.unknown_knob": 1}, "cls.unknown_knob"),
        ("refine", {"refine.method": "walk"}, "refine.method"),
        ("aff_labels", {"aff_labels.conf_bg": 0.5}, "conf_bg (0.5) must not exceed conf_fg"),
        ("train_aff", {"aff.feature_stride": 2}, "aff.feature_stride"),
        ("propagate", {"propagate.exp_times": -1}, "propagate.exp_times"),
        ("train_cls", {"seed": True}, "seed: Input should be a valid integer"),
        ("train_cls", {"cls.epochs": 2.5}, "cls.epochs"),
        ("prepare", {"data.synthetic.noise": float("inf")}, "data.synthetic.noise"),
        ("train_cls", {"cls.weight_decay": float("inf")}, "cls.weight_decay: Input should be a"),
        ("make_cam", {"cam.scales": [1.0, float("nan")]}, "cam.scales.1"),
        ("make_cam", {"cam.scales": [60.0]}, "cam.scales.0: Input should be less than or equal"),
        ("evaluate", {"evaluate.scales": [1e9]}, "evaluate.scales.0"),
        ("train_seg", {"seg.batch_size": 4, "seg.accumulate": 4}, "1 image per micro-batch"),
        ("train_cls", {"sead": 5}, "unknown top-level key 'sead'"),
        ("prepare", {"data.synthetic.min_objects": 3}, "min_objects (3) must not exceed max"),
        ("prepare", {"data.synthetic.min_object_size": 0.9}, "min_object_size (0.9) must not"),
        ("gallery", {"gallery.ids": ["syn_train_00001", "syn_train_00001"]}, "more than once"),
        # user text shown literally, not read as Rich markup
        ("train_cls", {"cls.optimizer": "sgd[/]"}, "'sgd[/]'"),
        ("evaluate", {"device": "[cuda]"}, "'[cuda]'"),
    ],
)
def test_invalid_params_are_rejected(tmp_path, stage, override, expected):
    app = importlib.import_module(f"stages.{stage}").app
    params = write_params(tmp_path, **override)
    result = runner.invoke(app, ["--params", str(params)])
    assert result.exit_code == 1
    assert expected in result.output and "error" in result.output


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("stage", "args", "expected"),
    [
        ("train_cls", ["--dataset", "nowhere"], "nowhere"),
        ("make_cam", ["--model", "missing.pt"], "missing.pt"),
        ("refine", ["--propagated", "no_walk"], "no_walk"),
        ("aff_labels", ["--cams", "no_cams"], "no_cams"),
        ("train_aff", ["--aff-labels", "no_labels"], "no_labels"),
        ("propagate", ["--model-dir", "no_model"], "no_model"),
        ("evaluate", ["--model", "missing.pt"], "missing.pt"),
    ],
)
def test_missing_inputs_are_named(tmp_path, tiny_layout, stage, args, expected):
    app = importlib.import_module(f"stages.{stage}").app
    params = write_params(tmp_path)
    if "--dataset" not in args:
        args = [*args, "--dataset", str(tiny_layout.root)]
    result = runner.invoke(app, ["--params", str(params), *args])
    assert result.exit_code == 1
    assert expected in result.output and "not found" in result.output


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed: 0\nseed: 1\n", "not valid YAML at line 2, column 1: key 'seed' given twice"),
        ("cls:\n  lr: 0.1\n  lr: 0.2\n", "line 3, column 3: key 'lr' given twice"),
        ("seed: [0\ncls: 1\n", "not valid YAML at line 2, column 4"),
        (
            "gallery:\n  a: &a [0, 0, 0, 0, 0, 0, 0, 0, 0]\n  b: &b [*a, *a, *a, *a, *a, *a]\n",
            "line 3, column 10: alias *a refused: params files take no aliases",
        ),
    ],
)
def test_yaml_errors_name_the_line_and_column(tmp_path, text, expected):
    (tmp_path / "params.yaml").write_text(text)
    app = importlib.import_module("stages.train_cls").app
    result = runner.invoke(app, ["--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1 and expected in result.output


def test_every_top_level_key_of_the_shipped_params_is_known():
    from stages.params.reader import TOP_LEVEL_KEYS

    assert list(yaml.safe_load((ROOT / "params.yaml").read_text())) == list(TOP_LEVEL_KEYS)
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        assert set(yaml.safe_load(config.read_text())) <= set(TOP_LEVEL_KEYS), config


@pytest.mark.bad_input
def test_missing_params_file(tmp_path):
    app = importlib.import_module("stages.prepare").app
    result = runner.invoke(app, ["--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "params file not found" in result.output


@pytest.mark.bad_input
def test_an_affinity_method_without_propagated_cams_says_what_to_run(tmp_path, tiny_layout):
    app = importlib.import_module("stages.refine").app
    params = write_params(tmp_path, **{"refine.method": "affinity"})
    (tmp_path / "propagated").mkdir()  # what propagate leaves when no affinity was needed
    args = ["--params", str(params), "--dataset", str(tiny_layout.root)]
    result = runner.invoke(app, [*args, "--propagated", str(tmp_path / "propagated")])
    assert result.exit_code == 1
    assert "no propagated CAMs" in result.output and "refine.method affinity" in result.output


@pytest.mark.parametrize(
    ("method", "function", "threshold"),
    [
        ("crf", "crf_pseudo_mask", 0.2),
        ("affinity", "threshold_pseudo_mask", 0.6),
        ("affinity+crf", "crf_pseudo_mask", 0.6),
    ],
)
def test_each_refine_method_labels_with_its_own_threshold(tmp_path, method, function, threshold):
    from stages.params.refine import RefineParams
    from stages.refine import labeller, threshold_policy

    path = write_params(
        tmp_path,
        **{
            "refine.method": method,
            "refine.bg_threshold": 0.2,
            "refine.propagated_bg_threshold": 0.6,
        },
    )
    p = RefineParams.model_validate(yaml.safe_load(path.read_text())["refine"])
    chosen = labeller(p)
    assert getattr(chosen, "func", chosen).__name__ == function
    assert threshold_policy(p).fixed == threshold


def test_the_tests_pin_the_cpu_and_float32_whatever_the_machine(tmp_path):
    """params.yaml says auto, which a machine with a GPU resolves to CUDA in bf16: every
    params file the tests write (and the end-to-end repositories) says cpu and off."""
    from pipeline_repo import reproduce  # noqa: F401  (it builds its params with pinned)

    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (shipped["device"], shipped["amp"]) == ("auto", "auto")
    written = yaml.safe_load(write_params(tmp_path).read_text())
    assert (written["device"], written["amp"]) == ("cpu", "off")
    assert set(written) == set(shipped)
    explicit = yaml.safe_load(write_params(tmp_path, device="cuda:1").read_text())
    assert explicit["device"] == "cuda:1"


def test_an_exponent_without_a_dot_is_a_number_as_dvc_reads_it(tmp_path):
    """``1e-3`` is a float to DVC (YAML 1.2) and to the stages; PyYAML alone reads a string."""
    from stages.params.cls import ClsParams
    from stages.params.reader import read_params

    params = write_params(tmp_path, **{"cls.lr": "LR"})
    params.write_text(params.read_text().replace("lr: LR\n", "lr: 1e-3\n"))
    assert read_params(params, "cls", ClsParams).lr == 0.001


@pytest.mark.bad_input
def test_a_long_bad_value_is_echoed_cut_short(tmp_path):
    params = write_params(tmp_path, **{"cls.backbone": "x" * 100_000})
    app = importlib.import_module("stages.train_cls").app
    result = runner.invoke(app, ["--params", str(params)])
    assert result.exit_code == 1 and "(100002 characters)" in result.output
    assert len(result.output) < 500


def test_the_stages_that_may_have_nothing_to_do_start_without_torch():
    """prepare, and the stages that train or walk nothing when their params say so (pretrain,
    train_recam, train_aff, propagate), import torch only once there is work: importing it costs
    seconds at every start of every stage, and the default pipeline skips three of them."""
    modules = ["prepare", "pretrain", "train_recam", "train_aff", "propagate"]
    code = ";".join(f"import stages.{m}" for m in modules)
    code += ";import sys;print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_stage_process_collects_garbage_again_after_its_imports(tmp_path):
    """``python -m stages.<name>`` imports with the collector off (stages/__init__.py);
    run_stage turns it on and freezes what was imported: a probe stage beside copies of the
    package's two modules, in a process of its own."""
    package = tmp_path / "stages"
    package.mkdir()
    for name in ("__init__.py", "cli.py"):
        shutil.copy(ROOT / "stages" / name, package / name)
    (package / "probe.py").write_text(
        "import gc, typer\n"
        "from stages.cli import run_stage\n"
        "imported_with = gc.isenabled()\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "def main():\n"
        "    print(imported_with, gc.isenabled(), gc.get_freeze_count() > 0)\n"
        "run_stage(app)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "stages.probe"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]


def test_importing_the_stages_in_a_process_of_another_command_leaves_its_collector_on():
    import gc

    import stages

    importlib.reload(stages)
    assert gc.isenabled()
