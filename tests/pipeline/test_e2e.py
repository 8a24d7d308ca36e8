"""The real `dvc repro` on a tiny configuration, in a temporary copy of the repository.

One pipeline run serves every test here: the tiny synthetic data brought as a user's own
VOC-layout folder (``data.source: folder``), so that the same run checks the import of a user's
dataset, every stage, and what DVC reruns when params or code change. The synthetic source's
own prepare is tested in tests/dataset/test_synthetic.py and tests/stages/.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT, built_once, listed
from PIL import Image
from pipeline_repo import FOLDER_CLASSES, TINY_DATA, TINY_PARAMS, dvc_env, own_copy, reproduce, run

from destseg.dataset.layout import VOCLayout
from destseg.dataset.sources.synthetic import SyntheticSpec, write_dataset
from destseg.evaluation.thresholds import candidates
from destseg.figures.gallery import TITLE_HEIGHT
from destseg.runtime.torch_files import load as torch_load


def _user_folder(root):
    """The tiny data as a user brings it: VOC layout, own class names, XML annotations or a
    tags file (``tags.csv`` inside the folder; without it prepare refuses those images) instead
    of masks for some train images, and two lists of train images that have masks: one to
    choose the thresholds on (``tuning``), one to score (``scored``)."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
    layout = VOCLayout(root)
    write_dataset(layout, SyntheticSpec(**{**data["synthetic"], **TINY_DATA}), data["seed"])
    train = layout.ids("train")
    unmasked = train[:4]
    (root / "Annotations").mkdir()
    for image_id in unmasked[:2]:
        names = "".join(
            f"<object><name>{FOLDER_CLASSES[c]}</name></object>" for c in layout.labels[image_id]
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{names}</annotation>")
    tags = [f"{i},{' '.join(FOLDER_CLASSES[c] for c in layout.labels[i])}" for i in unmasked[2:]]
    (root / "tags.csv").write_text("\n".join(["image,tags", *tags]) + "\n")
    for image_id in unmasked:
        layout.mask_path(image_id).unlink()
    for name in ("tune.txt", "report.txt"):  # the synthetic source's own lists
        (root / "ImageSets" / "Segmentation" / name).unlink()
    layout.write_split("tuning", train[4:9])
    layout.write_split("scored", train[9:])
    for name in ("classes.json", "labels.json"):  # not part of a user's folder
        (root / name).unlink()
    return root


def _reproduce_on_a_users_folder(folder):
    user = _user_folder(folder / "user_dataset")
    overrides = {
        "data.source": "folder",
        "data.folder.root": str(user),
        "data.folder.classes": FOLDER_CLASSES,
        "data.folder.tags": str(user / "tags.csv"),
        "splits.score_cams": "scored",
        "splits.tune": "tuning",
    }
    (folder / "repo").mkdir()
    # one thread per stage, whatever the machine: the sharded runs below are compared with
    # these outputs byte for byte, and more threads round some CAM values differently
    reproduce(folder / "repo", {**TINY_PARAMS, **overrides}, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository (code, dvc.yaml, tiny params) with the pipeline reproduced on a
    user's folder (``data.source: folder``), built once for every test process of the run and
    only read: a test that writes or runs DVC works in :func:`own_copy` of it."""
    shared = built_once(tmp_path_factory, "tiny_pipeline", _reproduce_on_a_users_folder)
    return shared / "repo", dvc_env()


@pytest.fixture
def own_repo(repo, tmp_path):
    """This test's own copy of the reproduced repository, and the environment for DVC."""
    root, env = repo
    return own_copy(root, tmp_path), env


def _json(path):
    return json.loads(path.read_text())


@pytest.mark.e2e
def test_every_metrics_file_holds_numbers_in_range(repo):
    root, _ = repo
    metrics = root / "data" / "metrics"
    train_cls = _json(metrics / "train_cls" / "metrics.json")
    assert 0 <= train_cls["val"]["map"] <= 1 and 0 <= train_cls["val"]["f1"] <= 1
    assert train_cls["train"]["loss"] > 0 and train_cls["step"] >= 1
    cam = _json(metrics / "make_cam.json")
    aff_labels = _json(metrics / "aff_labels.json")
    refine = _json(metrics / "refine.json")
    evaluate = _json(metrics / "evaluate.json")
    train_aff = _json(metrics / "train_aff" / "metrics.json")
    assert 0 <= train_aff["val"]["balanced_accuracy"] <= 1 and train_aff["train"]["loss"] > 0
    assert 0 < aff_labels["ignored_fraction"] < 1
    for scores in (cam, aff_labels, refine, evaluate):
        for key in ("miou",):
            assert 0 <= scores[key] <= 1
    for key in ("fg_precision", "fg_recall", "all_background_miou"):
        assert 0 <= cam[key] <= 1
    assert 0 <= refine["ignored_fraction"] <= 1
    for key in ("pixel_accuracy", "mean_class_accuracy", "all_background_miou"):
        assert 0 <= evaluate[key] <= 1
    train_seg = _json(metrics / "train_seg" / "metrics.json")
    assert train_seg["train"]["loss"] > 0 and 0 <= train_seg["val"]["miou"] <= 1
    # seg.val_every 2 of 8 epochs: after the 2nd, 4th, 6th and 8th (the curve of the plots page)
    curve = pd.read_csv(metrics / "train_seg" / "plots" / "metrics" / "val" / "miou.tsv", sep="\t")
    assert list(curve["step"]) == [1, 3, 5, 7] and curve["miou"].between(0, 1).all()
    # every stage beats predicting background everywhere on the same pixels, clearly
    assert cam["miou"] > cam["all_background_miou"] + 0.05
    assert refine["miou"] > cam["all_background_miou"] + 0.05  # the same split (score_cams)
    assert evaluate["miou"] > evaluate["all_background_miou"] + 0.05
    table = pd.read_csv(metrics / "evaluate_per_class.csv")
    assert list(table["class"]) == FOLDER_CLASSES
    per_image = pd.read_csv(metrics / "evaluate_per_image.csv", dtype={"image": str})
    val = (root / "data/dataset/ImageSets/Segmentation/val.txt").read_text().split()
    assert sorted(per_image["image"]) == sorted(val) and per_image["miou"].is_monotonic_increasing
    assert per_image["miou"].between(0, 1).all() and per_image["classes"].notna().any()
    sweep = pd.read_csv(root / "data" / "plots" / "cam_threshold_sweep.csv")
    assert sweep["threshold"].is_monotonic_increasing and sweep["miou"].between(0, 1).all()
    # the headline numbers, copied under names of their own
    assert _json(metrics / "summary.json") == {
        "cls_map": train_cls["val"]["map"],
        "cam_miou": cam["miou"],
        "cam_thr": cam["threshold"],
        "mask_miou": refine["miou"],
        "mask_thr": refine["bg_threshold"],
        "seg_miou": evaluate["miou"],
    }


@pytest.mark.e2e
def test_outputs_are_complete(repo):
    root, _ = repo
    train_ids = (root / "data/dataset/ImageSets/Segmentation/train.txt").read_text().split()
    val_ids = (root / "data/dataset/ImageSets/Segmentation/val.txt").read_text().split()
    for folder in ("cam", "aff_labels", "propagated_cam"):
        assert sorted(p.stem for p in listed(root / "data" / folder)) == sorted(train_ids)
    assert [p.name for p in listed(root / "data/train_aff")] == ["model.pt"]
    curves = root / "data/metrics/train_aff/plots/metrics"
    assert {p.name for p in (curves / "train").iterdir()} == {"loss.tsv", "lr.tsv"}
    assert (curves / "val" / "balanced_accuracy.tsv").is_file()
    for name in ("evaluate_confusion.png", "pseudo_mask_confusion.png"):
        with Image.open(root / "data" / "plots" / name) as figure:
            assert figure.format == "PNG"
    assert sorted(p.stem for p in listed(root / "data/pseudo_mask")) == sorted(train_ids)
    predictions = root / "data/evaluate/prediction"
    assert sorted(p.stem for p in listed(predictions)) == sorted(val_ids)
    assert not [p for p in (root / "data").rglob("*") if p.name.endswith((".tmp", ".old"))]


# Each inference stage with every output redirected (option, name under the run's folder).
SHARDED_OUTPUTS = {
    "make_cam": {"--out": "cam", "--metrics": "m.json", "--sweep-plot": "sweep.csv"},
    "aff_labels": {"--out": "aff_labels", "--metrics": "m.json"},
    "propagate": {"--out": "propagated"},
    "refine": {"--out": "masks", "--metrics": "m.json", "--confusion": "confusion.png"},
    "evaluate": {
        "--predictions": "predictions",
        "--metrics": "m.json",
        "--per-class": "per_class.csv",
        "--confusion": "confusion.png",
        "--per-image": "per_image.csv",
    },
}


def _stage_in(root, env, folder, stage, outputs, **overrides):
    """Run ``stage`` in the reproduced repository with params.yaml changed by ``overrides``
    (section.key) and its outputs under ``folder``; return the completed process."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        params[section][key] = value
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    args = [x for option, name in outputs.items() for x in (option, str(folder / name))]
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "--params", str(folder / "params.yaml"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _files(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "params.yaml"
    }


def _pipeline_files(root, stage, outputs):
    """The files that ``dvc repro`` wrote for ``stage``'s ``outputs`` (option, name), by the
    names they have under a run's folder: the options' paths read from dvc.yaml's command."""
    command = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]["cmd"].split()
    files = {}
    for option, name in outputs.items():
        path = root / command[command.index(option) + 1]
        if path.is_file():
            files[name] = path.read_bytes()
        else:
            files |= {f"{name}/{k}": v for k, v in _files(path).items()}
    return files


@pytest.mark.e2e
@pytest.mark.parametrize("stage", SHARDED_OUTPUTS)
def test_a_sharded_stage_writes_the_bytes_of_an_unsharded_one(repo, tmp_path, stage):
    """The stage in 2 processes against the shared pipeline's own one-process outputs, both at
    one thread per process: at 2 threads the CPU's convolutions round some float16 CAM values
    one step apart (measured on make_cam: docs/gpus.md, "Several GPUs and several processes")."""
    root, env = repo
    env = {**env, "OMP_NUM_THREADS": "1"}
    folder = tmp_path / "nproc2"
    done = _stage_in(root, env, folder, stage, SHARDED_OUTPUTS[stage], **{"dist.nproc": 2})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes (torchrun)" in done.stdout
    sharded, single = _files(folder), _pipeline_files(root, stage, SHARDED_OUTPUTS[stage])
    assert len(single) > 1 and single.keys() == sharded.keys()
    assert [name for name in single if single[name] != sharded[name]] == []
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".old"))]


@pytest.mark.e2e
def test_the_gpu_checks_torchrun_comparison_finds_identical_outputs(repo, tmp_path):
    """benchmarks/gpu_check.py's part (c) on the CPU: evaluate as the one process of torchrun
    writes the bytes of a plain run (make_cam goes through the same loop; both stages in two
    processes are compared with the pipeline's own outputs above)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    root, env = repo
    env = {**env, "OMP_NUM_THREADS": "1"}
    differing = gpu_check.same_under_torchrun(root, env, tmp_path, stages=("evaluate",))
    assert differing == {"evaluate": []}


@pytest.mark.e2e
def test_train_cls_in_two_processes_writes_one_model_and_one_log(own_repo, tmp_path):
    root, env = own_repo
    outputs = {"--out": "model.pt", "--checkpoint": "ck.pt", "--live-dir": "live"}
    done = _stage_in(
        root, env, tmp_path / "run", "train_cls", outputs, **{"dist.nproc": 2, "cls.epochs": 1}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("classifier epoch 1/1") == 1  # rank 0 alone logs
    # a log file's lines (stdout is a pipe here): the steps' pace, then the epoch's
    took = r"[\d hmins]+"  # 41 s, 1 min 5 s, ...
    assert re.search(rf"^epoch 1/1: \d+ steps in {took}, [\d.]+/s$", done.stdout, re.M)
    pace = rf"\({took}, [\d.]+ images/s, 0 s left\)"
    assert re.search(rf"^classifier epoch 1/1 {pace}: train/loss ", done.stdout, re.M)
    model = torch_load(tmp_path / "run" / "model.pt")
    assert model["kind"] == "classifier"
    assert not (tmp_path / "run" / "ck.pt").exists()
    metrics = _json(tmp_path / "run" / "live" / "metrics.json")
    assert metrics["step"] == 0 and 0 <= metrics["val"]["map"] <= 1
    # each branch's own loss, summed over both processes' images like the loss itself
    assert {"loss", "loss_ldm", "loss_plain", "loss_mdc"} <= metrics["train"].keys()


@pytest.mark.e2e
@pytest.mark.bad_input
def test_a_failure_in_the_processes_is_one_line_each_and_a_summary(repo, tmp_path):
    root, env = repo
    outputs = {**SHARDED_OUTPUTS["evaluate"], "--model": "missing.pt"}
    done = _stage_in(root, env, tmp_path / "run", "evaluate", outputs, **{"dist.nproc": 2})
    assert done.returncode == 1
    assert done.stderr.count("missing.pt") >= 2  # each process names the file
    assert done.stderr.strip().splitlines()[-1] == (
        "error: dist.nproc: 2 of 2 processes failed (their errors are above)"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "predictions").exists()


@pytest.mark.e2e
def test_the_gallery_draws_every_step_and_the_offline_plots_page_holds_every_plot(own_repo):
    root, env = own_repo
    reported = (root / "data/dataset/ImageSets/Segmentation/scored.txt").read_text().split()
    figures = sorted(p for p in listed(root / "data/gallery") if p.is_file())
    assert len(figures) == 8 and {p.stem for p in figures} <= set(reported)
    size = yaml.safe_load((root / "params.yaml").read_text())["gallery"]["size"]
    for path in figures:
        width, height = Image.open(path).size
        # image, a CAM and a walked CAM per class (1-2), confident regions, 3 label maps
        assert height == size + 2 * TITLE_HEIGHT + 4 and width in range(7 * size, 10 * size, size)
    # the held-out rows: the 4 worst val images of evaluate's table, 4 panels each
    worst = pd.read_csv(root / "data/metrics/evaluate_per_image.csv", dtype={"image": str})
    held_out = sorted((root / "data/gallery/val").iterdir())
    assert sorted(p.stem for p in held_out) == sorted(worst["image"][:4])
    assert all(Image.open(p).size[0] == 4 * size for p in held_out)
    # the page of scripts/plots_page.py: DVC's own, with vega, vega-lite and vega-embed inline
    sys.path.insert(0, str(ROOT / "scripts"))
    import plots_page

    script = [sys.executable, str(ROOT / "scripts" / "plots_page.py"), "--out", "plots_page"]
    assert "renders offline" in run(script, root, env)
    page = (root / "plots_page" / "index.html").read_text()
    assert plots_page.external_resources(page) == [] and "window.vegaEmbed=" in page
    declared = [
        "train_cls/plots/metrics",
        "train_aff/plots/metrics",
        "train_seg/plots/metrics",
        "cam_threshold_sweep.csv",
        "evaluate_per_class.csv",
        "evaluate_confusion.png",
        "pseudo_mask_confusion.png",
        *(f"gallery/{p.name}" for p in figures),
        *(f"gallery/val/{p.name}" for p in held_out),
    ]
    assert not [name for name in declared if name not in page]


# One idea per module: editing a section's schema, or a library module, changes the code deps of
# the stages that import it and of no other (the stages after those rerun only if their outputs
# change, and DVC's run cache restores outputs it has seen).
CODE_EDITS = {
    "stages/params/gallery.py": {"gallery"},
    "stages/params/cam.py": {"make_cam"},
    "stages/params/refine.py": {"refine"},
    "stages/params/refine_method.py": {"aff_labels", "refine"},
    "src/destseg/affinity/walk.py": {"propagate"},
    "src/destseg/training/checkpoint.py": {
        "pretrain",
        "train_cls",
        "train_recam",
        "train_aff",
        "train_seg",
    },
    "src/destseg/models/recam.py": {"pretrain", "train_cls", "train_recam", "make_cam"},
}


@pytest.mark.e2e
def test_editing_one_module_reruns_only_the_stages_that_use_it(own_repo):
    """Each edit of :data:`CODE_EDITS` in turn, undone before the next, in one copy (a copy and
    a cold DVC state per edit cost more than the checks)."""
    root, env = own_repo
    run(["git", "checkout", "params.yaml"], root, env)
    assert json.loads(run(["dvc", "status", "--json"], root, env)) == {}
    found = {}
    for path in CODE_EDITS:
        file = root / path
        original = file.read_text()
        try:
            file.write_text(original + "\n# an edit\n")
            found[path] = set(json.loads(run(["dvc", "status", "--json"], root, env)))
        finally:
            file.write_text(original)
    assert found == CODE_EDITS


@pytest.mark.e2e
def test_a_param_change_reruns_only_the_stages_that_read_it(own_repo):
    root, env = own_repo
    assert "up to date" in run(["dvc", "status"], root, env).lower()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["refine"]["min_confidence"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], root, env))
    assert set(status) == {"refine"}
    params["evaluate"]["flip"] = False
    params["seed"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], root, env))
    assert set(status) == {
        "refine", "evaluate", "train_cls", "train_recam", "train_aff", "train_seg",
    }  # fmt: skip


def _stagesrun(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


@pytest.mark.e2e
def test_refine_method_runs_only_the_stages_it_needs(own_repo):
    root, env = own_repo
    run(["git", "checkout", "params.yaml"], root, env)
    params = yaml.safe_load((root / "params.yaml").read_text())
    before = _json(root / "data/metrics/refine.json")
    # affinity+crf -> affinity: of the stages before refine only aff_labels reads the method (it
    # writes the same labels, so the affinity training and the walk are not rerun)
    params["refine"]["method"] = "affinity"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(run(["dvc", "status", "--json"], root, env))) == {"aff_labels", "refine"}
    # -> crf: the affinity stages empty their outputs instead of training (up to the
    # pseudo-masks: the stages after them read only those, tested above)
    params["refine"]["method"] = "crf"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro", "refine"], root, env)
    assert _stagesrun(output) == {"aff_labels", "train_aff", "propagate", "refine"}
    assert "not trained" in output and "nothing propagated" in output
    for folder in ("aff_labels", "train_aff", "propagated_cam", "metrics/train_aff/plots/metrics"):
        assert not any(listed(root / "data" / folder))
    assert _json(root / "data/metrics/aff_labels.json") == {}
    refine = _json(root / "data/metrics/refine.json")
    assert refine.keys() == before.keys() and 0 <= refine["miou"] <= 1
    assert refine["bg_threshold"] in candidates() and 0 <= refine["tune_miou"] <= 1
    # back to affinity+crf: DVC's run cache restores every stage, nothing is retrained
    run(["git", "checkout", "params.yaml"], root, env)
    output = run(["dvc", "repro"], root, env)
    assert not _stagesrun(output)
    assert _json(root / "data/metrics/refine.json") == before


def _write_params(root, params):
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.e2e
def test_the_positive_controls_rerun_what_they_touch_and_run_as_an_experiment(own_repo):
    root, env = own_repo
    run(["git", "checkout", "params.yaml"], root, env)
    params = yaml.safe_load((root / "params.yaml").read_text())
    # ReCAM is a stage of its own: its keys rerun it (and, once its output changes, make_cam
    # on); the classifier of train_cls is not retrained
    params["recam"]["enabled"] = True
    _write_params(root, params)
    assert set(json.loads(run(["dvc", "status", "--json"], root, env))) == {"train_recam"}
    # Puzzle-CAM is a loss of train_cls (ReCAM's stage reads cls for its own recipe)
    params["recam"]["enabled"] = False
    params["cls"]["puzzle"]["enabled"] = True
    _write_params(root, params)
    status = set(json.loads(run(["dvc", "status", "--json"], root, env)))
    assert status == {"train_cls", "train_recam"}
    run(["git", "checkout", "params.yaml"], root, env)
    # both at once, on the LDM + MDC classifier, as a DVC experiment beside the workspace, up to
    # the CAMs they change (the stages after make_cam run the code of every other run)
    overrides = {
        "cls.puzzle.enabled": "true",
        "cls.epochs": "1",
        "recam.enabled": "true",
        "recam.epochs": "1",
    }
    command = ["dvc", "exp", "run", "--temp", "-n", "controls", "make_cam"]
    output = run(command + [f"-S{k}={v}" for k, v in overrides.items()], root, env)
    assert "train_recam" in output
    from dvc.api import exp_show

    rows = [r for r in exp_show(repo=str(root)) if r.get("Experiment") == "controls"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert 0 <= row["data/metrics/train_recam/metrics.json:val.map"] <= 1
    assert row["train.loss_recam"] > 0  # ReCAM's term, logged by train_recam
    assert row["train.loss_tiled"] > 0 and row["train.loss_reconstruction"] >= 0  # Puzzle-CAM
    assert 0 <= row["data/metrics/make_cam.json:miou"] <= 1
    assert json.loads(run(["dvc", "status", "--json"], root, env)) == {}  # workspace untouched
    # README's comparison of experiments fits a terminal of 100 columns, every value shown
    (command,) = [
        line.split("#")[0].strip()
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("dvc exp show --drop")
    ]
    table = run([*shlex.split(command), "--no-pager"], root, {**env, "COLUMNS": "100"})
    assert max(len(line) for line in table.splitlines()) <= 100 and "…" not in table
    assert "controls" in table and "cam_miou" in table and "seg_miou" in table


@pytest.mark.e2e
def test_the_pipeline_runs_on_a_users_folder(repo):
    root, _ = repo
    dataset = VOCLayout(root / "data/dataset")
    assert dataset.classes == FOLDER_CLASSES
    assert dataset.split_names() == ["scored", "train", "tuning", "val"]
    train_ids = dataset.ids("train")
    unmasked = train_ids[:4]  # labelled by their XML annotations (2) or the tags file (2) alone
    assert all(dataset.labels[i] for i in unmasked)
    assert not any(dataset.mask_path(i).exists() for i in unmasked)
    tags = pd.read_csv(root.parent / "user_dataset" / "tags.csv", dtype=str, keep_default_na=False)
    assert list(tags["image"]) == unmasked[2:]
    for image_id, names in zip(tags["image"], tags["tags"], strict=True):
        assert [FOLDER_CLASSES[c] for c in dataset.labels[image_id]] == names.split()
    assert sorted(p.stem for p in listed(root / "data/pseudo_mask")) == sorted(train_ids)
    table = pd.read_csv(root / "data/metrics/evaluate_per_class.csv")
    assert list(table["class"]) == FOLDER_CLASSES
    assert 0 <= _json(root / "data/metrics/refine.json")["miou"] <= 1
    # threshold: auto works on the user's own tuning list
    cam, refine = (
        _json(root / "data/metrics/make_cam.json"),
        _json(root / "data/metrics/refine.json"),
    )
    assert cam["threshold"] in candidates() and refine["bg_threshold"] in candidates()
    assert 0 <= cam["tune_miou"] <= 1 and 0 <= refine["tune_miou"] <= 1


@pytest.mark.e2e
def test_a_file_edited_added_or_removed_in_the_users_folder_reruns_prepare(repo, tmp_path):
    """The user's folder is a dependency of prepare in dvc.yaml (``${data.folder.root}``): DVC
    sees a file of it edited, added or removed (the tags file kept inside it too), with no
    ``dvc repro -f``, and an edit undone is up to date again."""
    root, env = repo
    folder = shutil.copytree(root.parent / "user_dataset", tmp_path / "folder")
    copy = own_copy(root, tmp_path)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["data"]["folder"] |= {"root": str(folder), "tags": str(folder / "tags.csv")}
    _write_params(copy, params)
    run(["dvc", "repro", "prepare"], copy, env)  # the same images: the same dataset
    assert json.loads(run(["dvc", "status", "--json"], copy, env)) == {}

    def changed() -> dict:  # prepare alone: the other stages' outputs need not be hashed
        status = json.loads(run(["dvc", "status", "--json", "prepare"], copy, env))
        assert set(status) == {"prepare"}, status
        return status["prepare"][0]["changed deps"]

    tags = (folder / "tags.csv").read_text()
    (folder / "tags.csv").write_text(tags.replace("image,tags", "image,tags,note"))
    assert changed() == {str(folder): "modified"}
    (folder / "tags.csv").write_text(tags)
    assert json.loads(run(["dvc", "status", "--json", "prepare"], copy, env)) == {}
    (folder / "JPEGImages" / "new.jpg").write_bytes((folder / "tags.csv").read_bytes())
    assert changed() == {str(folder): "modified"}
    (folder / "JPEGImages" / "new.jpg").unlink()
    next((folder / "Annotations").iterdir()).unlink()
    assert changed() == {str(folder): "modified"}
