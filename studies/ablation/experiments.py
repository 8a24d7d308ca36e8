"""The studies' DVC experiments: the queue commands, and their metrics, CAMs and classifiers read
back from `dvc exp show` rows, the experiments' commits and DVC's cache."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from studies.ablation.designs import CAM_METRICS_FILES, CAM_ONLY, CAM_STAGE, STUDIES

# `dvc exp show` states of experiments whose metrics are their own (None: run outside the queue)
FINISHED = (None, "Success")

NAME = re.compile(r"^(?P<variant>[a-z0-9-]+)-seed(?P<seed>\d+)$")


def queue_commands(
    seeds: list[int],
    study: str = "destruction",
    variants: list[str] | None = None,
    cam_only: bool = False,
) -> list[list[str]]:
    """The `dvc exp run --queue` command of every variant of ``study`` (or of ``variants``, in
    that order) and seed, seed by seed: a queue stopped part-way leaves whole seeds, every
    variant paired with its baseline. ``cam_only``: up to make_cam, named ``cam-...``."""
    spec = STUDIES[study]
    commands = []
    for seed in seeds:
        for variant in variants or spec.variants:
            name = f"{CAM_ONLY if cam_only else ''}{spec.prefix}{variant}-seed{seed}"
            command = ["dvc", "exp", "run", "--queue", "-n", name]
            command += [CAM_STAGE] if cam_only else []
            overrides = {**spec.base, **spec.variants[variant], "seed": str(seed)}
            for key, value in overrides.items():
                command += ["-S", f"{key}={value}"]
            commands.append(command)
    return commands


def _metric(row: dict, file: str, key: str) -> float:
    """A metric from a `dvc exp show` row: DVC prefixes a key with its file only when the same
    key exists in several metrics files."""
    value = row.get(f"{file}:{key}", row.get(key))
    return float(value) if isinstance(value, int | float) else float("nan")


def none_finished(study: str, cam_only: bool) -> str:
    """What to say when no experiment of ``study`` has finished."""
    prefix = f"{CAM_ONLY if cam_only else ''}{STUDIES[study].prefix}"
    return (
        f"no finished experiment of the {study} study ({prefix}<variant>-seed<N>) in dvc exp "
        "show: queue them and run `dvc queue start`, or give --rev for those of another commit "
        "(--keep adds the runs recorded in the tables)"
    )


def finished(
    rows: list[dict],
    study: str = "destruction",
    seeds: list[int] | None = None,
    required: bool = True,
    cam_only: bool = False,
) -> list[tuple[dict, str, int]]:
    """(row, variant, seed) of every finished experiment of ``study`` in `dvc exp show` rows
    (of ``seeds`` only, if given; the ``cam-`` ones with ``cam_only``), in the study's variant
    order, then by seed; none found is an error when ``required``."""
    spec = STUDIES[study]
    prefix = f"{CAM_ONLY if cam_only else ''}{spec.prefix}"
    variants = list(spec.variants)
    found = []
    for row in rows:
        name = str(row.get("Experiment") or "")
        match = NAME.match(name.removeprefix(prefix)) if name.startswith(prefix) else None
        if match is None or match["variant"] not in variants:
            continue
        if row.get("State") not in FINISHED:  # a queued or running row shows stale metrics
            continue
        if seeds is not None and int(match["seed"]) not in seeds:
            continue
        found.append((row, match["variant"], int(match["seed"])))
    if not found and required:
        raise ValueError(none_finished(study, cam_only))
    return sorted(found, key=lambda item: (variants.index(item[1]), item[2]))


def runs(
    rows: list[dict],
    study: str = "destruction",
    seeds: list[int] | None = None,
    required: bool = True,
    cam_only: bool = False,
) -> pd.DataFrame:
    """One row per finished experiment of ``study`` (variant, seed, metrics) from
    `dvc exp show`, of ``seeds`` only if given; with ``cam_only`` the ``cam-`` experiments on
    the metrics up to make_cam."""
    metrics = STUDIES[study].metrics
    if cam_only:
        metrics = [m for m in metrics if m[1] in CAM_METRICS_FILES]
    records = []
    for row, variant, seed in finished(rows, study, seeds, required, cam_only):
        record = {"variant": variant, "seed": seed}
        record |= {column: _metric(row, file, key) for column, file, key in metrics}
        records.append(record)
    return pd.DataFrame(records)


def with_recorded(
    frame: pd.DataFrame, record: Path, study: str, seeds: list[int] | None = None
) -> pd.DataFrame:
    """``frame`` plus the rows of the runs file ``record`` (an earlier output of this script)
    whose variant and seed ``frame`` lacks, in the study's variant order, then by seed.

    Experiments live in git refs that a fresh clone or another machine does not have; the runs
    file in git is the record of what they measured, so a study can grow over several
    sessions. A run present in both comes from ``frame`` (the experiment itself)."""
    if not record.is_file():
        return frame
    recorded = pd.read_csv(record)
    if seeds is not None:
        recorded = recorded[recorded["seed"].isin(seeds)]
    new = set(zip(frame.get("variant", []), frame.get("seed", []), strict=True))
    kept = recorded[
        [(v, s) not in new for v, s in zip(recorded["variant"], recorded["seed"], strict=True)]
    ]
    merged = pd.concat([frame, kept], ignore_index=True)
    if merged.empty:
        raise ValueError(f"no experiment of the {study} study found, and none in {record}")
    order = list(STUDIES[study].variants)
    rank = merged["variant"].map(order.index)
    return merged.iloc[np.lexsort((merged["seed"].to_numpy(), rank.to_numpy()))].reset_index(
        drop=True
    )


def experiment_profile(rev: str) -> dict[str, float]:
    """The CAM profile of the experiment at git revision ``rev``: its params, chosen threshold,
    reported list and CAMs as that commit and DVC's cache hold them, one value per region and
    measure (``part CAM``, ``part share``, ...)."""
    from dvc.api import DVCFileSystem

    from destseg.cam.profile import REGIONS, region_profile
    from destseg.cam.store import load_cam
    from destseg.dataset.ids import check_id
    from destseg.dataset.sources.synthetic import SyntheticSpec

    fs = DVCFileSystem(".", rev=rev)
    config = yaml.safe_load(fs.read_text("params.yaml"))
    threshold = json.loads(fs.read_text("data/metrics/make_cam.json"))["threshold"]
    listed = check_id(config["splits"]["score_cams"], "splits.score_cams")
    ids = fs.read_text(f"data/dataset/ImageSets/Segmentation/{listed}.txt").split()

    def read_cam(image_id: str):
        with fs.open(f"data/cam/{check_id(image_id)}.npz", "rb") as handle:
            return load_cam(io.BytesIO(handle.read()))

    data = config["data"]
    table = region_profile(
        SyntheticSpec(**data["synthetic"]), data["seed"], set(ids), read_cam, threshold
    )
    record = {}
    for region in REGIONS:
        record[f"{region} CAM"] = table.loc[region, "mean_cam"]
        record[f"{region} share"] = table.loc[region, "share_above"]
    return record


BRANCHES = {"ldm": "LDM (w^.F)", "plain": "plain (w.F)", "mdc": "MDC (w~.F~)"}


def _experiment_classifier(fs, work: Path) -> tuple:
    """An experiment's params (a dict), dataset layout (copied into ``work``), classifier of
    train_cls in eval mode on the CPU and its recorded config, from its DVCFileSystem ``fs``."""
    import torch

    from destseg.dataset.layout import VOCLayout
    from destseg.models.classifier import Classifier
    from destseg.models.model_file import load_model

    config = yaml.safe_load(fs.read_text("params.yaml"))
    fs.get("data/dataset", str(work / "dataset"), recursive=True)
    fs.get_file("data/train_cls/model.pt", str(work / "model.pt"))
    model, stored = load_model(work / "model.pt", Classifier, torch.device("cpu"))
    return config, VOCLayout(work / "dataset"), model.eval(), stored


def experiment_branch_cams(rev: str) -> list[dict]:
    """For the experiment at git revision ``rev`` (synthetic data): each branch's term of its
    classifier's CAM as a CAM of its own, and the stacked CAM, each at its own threshold chosen
    on splits.tune, scored and profiled on splits.score_cams (:mod:`studies.branch_cams`)."""
    import tempfile

    from dvc.api import DVCFileSystem

    from destseg.dataset.sources.synthetic import SyntheticSpec
    from studies.branch_cams import branch_cam_profiles

    fs = DVCFileSystem(".", rev=rev)
    with tempfile.TemporaryDirectory() as work:
        config, layout, model, _ = _experiment_classifier(fs, Path(work))
        data, cam = config["data"], config["cam"]
        table = branch_cam_profiles(
            model, layout, config["splits"], SyntheticSpec(**data["synthetic"]), data["seed"],
            cam["scales"], cam["flip"],
        )  # fmt: skip
    return table.to_dict("records")


def experiment_branches(rev: str) -> tuple[list[dict], list[dict], float]:
    """For the experiment at git revision ``rev`` (synthetic data): each branch's own val mAP on
    intact and on region-confused images (at the experiment's cls.ldm grid and k), each
    branch's own training loss per epoch (DVCLive's ``train/loss_<branch>``; a one-branch
    classifier's is its loss), and the linear probe's accuracy on the bodies."""
    import tempfile

    from dvc.api import DVCFileSystem

    from destseg.dataset.sources.synthetic import SyntheticSpec
    from destseg.dataset.torch_dataset import VOCDataset
    from destseg.models.classifier import branch_names
    from studies.body_probe import body_probe
    from studies.branch_profile import branch_map

    fs = DVCFileSystem(".", rev=rev)
    with tempfile.TemporaryDirectory() as work:
        config, layout, model, stored = _experiment_classifier(fs, Path(work))
        val = VOCDataset(layout, layout.ids(config["splits"]["val"]))
        ldm = config["cls"]["ldm"]
        names = branch_names(stored.get("ldm"), stored.get("mdc"))
        intact = branch_map(model, val, ldm, shuffled=False)
        confused = branch_map(model, val, ldm, shuffled=True)
        data = config["data"]
        probe = body_probe(model, SyntheticSpec(**data["synthetic"]), data["seed"])
    maps = [
        {"branch": BRANCHES[n], "mAP intact": a, "mAP confused": b}
        for n, a, b in zip(names, intact, confused, strict=True)
    ]
    losses = []
    for name in names:
        metric = "loss" if len(names) == 1 else f"loss_{name}"
        table = pd.read_csv(
            io.StringIO(fs.read_text(f"data/metrics/train_cls/plots/metrics/train/{metric}.tsv")),
            sep="\t",
        )
        losses += [
            {"branch": BRANCHES[name], "epoch": int(step) + 1, "loss": loss}
            for step, loss in zip(table["step"], table[metric], strict=True)
        ]
    return maps, losses, probe
