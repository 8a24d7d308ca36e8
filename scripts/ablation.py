"""Multi-seed studies as DVC experiments: the destruction-learning ablation (baseline, +LDM, +MDC,
both, +LDM with grid 8, both with each branch's own loss), the same in the constellation regime
(`--study constellation`, experiments named `constellation-<variant>-seed<N>`), and the
refinement methods (refine.method crf, affinity, affinity+crf).

Queue the experiments (DVC experiments with -S overrides, one per variant and seed), run them,
then collect their metrics into a table (mean and standard deviation per variant):

    python scripts/ablation.py queue --study destruction --seeds 0 --seeds 1 --seeds 2
    dvc queue start            # runs them one after another; `dvc queue status` to follow
    python scripts/ablation.py collect --study destruction

`collect` reads every finished experiment named `<variant>-seed<N>` of the study from
`dvc exp show` (experiments of the commits they were queued from: HEAD, or each `--rev`)
and writes `<out>.csv` (one row per variant), `<out>.md` (the same as a markdown table, mean ±
standard deviation over seeds; for the destruction study followed by the per-seed paired
differences against the baseline, also in `<out>_paired.csv`) and `<out>_runs.csv` (one row
per experiment); `<out>` is
`data/ablation` for the destruction study and `data/refine_methods` for the refinement one.
With `--keep`, the runs already in `<out>_runs.csv` that `dvc exp show` does not list (the
experiments of another clone or machine: git refs do not travel with the repository) stay in
the tables, so a study can grow over several sessions.

On the synthetic data, `profile` adds where each experiment's CAM is strong (part, body,
background: :mod:`destseg.cam.profile`), read from the experiment's commit and DVC's cache, into
`data/ablation_profile.md` (mean ± std per variant) and `data/ablation_profile_runs.csv`:

    python scripts/ablation.py profile
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
import yaml

VARIANTS = {
    "baseline": {"cls.ldm.enabled": "false", "cls.mdc.enabled": "false"},
    "ldm": {"cls.ldm.enabled": "true", "cls.mdc.enabled": "false"},
    "mdc": {"cls.ldm.enabled": "false", "cls.mdc.enabled": "true"},
    "ldm-mdc": {"cls.ldm.enabled": "true", "cls.mdc.enabled": "true"},
    # The LDM alone with cells the size of the demo's parts (16 px at 128 px): at grid 4 the
    # 32 px cells keep every part whole, so the shuffle removes little (docs/results.md).
    "ldm-grid8": {"cls.ldm.enabled": "true", "cls.mdc.enabled": "false", "cls.ldm.grid": "8"},
    # Both modules with each branch's own loss beside the stacked one (cls.branch_loss), at
    # weight 1: the branches' mean own loss counts as much as the stacked logits' loss. Fixed
    # before any run with it; not tuned.
    "ldm-mdc-branch": {
        "cls.ldm.enabled": "true",
        "cls.mdc.enabled": "true",
        "cls.branch_loss": "1.0",
    },
}

# The positive controls (docs/results.md, "Positive controls"): each on the plain classifier
# with its reference's recipe as params.yaml scales it (cls.puzzle, recam). Fixed before any run.
CONTROLS = {
    "recam": {"cls.ldm.enabled": "false", "cls.mdc.enabled": "false", "recam.enabled": "true"},
    "puzzle": {
        "cls.ldm.enabled": "false",
        "cls.mdc.enabled": "false",
        "cls.puzzle.enabled": "true",
    },
}
CONTROL_VARIANTS = {
    "baseline": VARIANTS["baseline"],
    **CONTROLS,
    "ldm-mdc": VARIANTS["ldm-mdc"],
}

# The constellation regime that passed the premise check (docs/results.md, R9): the part's
# evidence is an arrangement of dots that region confusion at grid 4, k 2 destroys.
CONSTELLATION = {
    "data.synthetic.part_style": "constellation",
    "data.synthetic.part_size": "0.1",
    "data.synthetic.part_span": "0.45",
    "data.synthetic.min_object_size": "0.6",
    "data.synthetic.body_thinness": "0.7",
    "data.synthetic.body_saliency": "0.13",
    "cls.ldm.k": "2",
}
CONSTELLATION_VARIANTS = {
    **{name: VARIANTS[name] for name in ("baseline", "ldm", "mdc", "ldm-mdc", "ldm-mdc-branch")},
    **CONTROLS,
}

# (column in the table, metrics file, key in that file)
METRICS = [
    ("classifier mAP", "data/metrics/train_cls/metrics.json", "val.map"),
    ("ReCAM phase mAP", "data/metrics/train_recam/metrics.json", "val.map"),
    ("CAM threshold", "data/metrics/make_cam.json", "threshold"),
    ("CAM mIoU", "data/metrics/make_cam.json", "miou"),
    ("CAM object recall", "data/metrics/make_cam.json", "fg_recall"),
    ("CAM oracle mIoU", "data/metrics/make_cam.json", "oracle_miou"),
    ("pseudo-mask threshold", "data/metrics/refine.json", "bg_threshold"),
    ("pseudo-mask mIoU", "data/metrics/refine.json", "miou"),
    ("segmentation mIoU", "data/metrics/evaluate.json", "miou"),
]
# The results compared per seed against the baseline (``paired``).
PAIRED = ["CAM mIoU", "pseudo-mask mIoU", "segmentation mIoU"]

# With --cam-only, experiments run the pipeline up to make_cam (DVC's run cache then serves those
# stages to the whole runs queued later), are named with this prefix, and are tabulated on the
# metrics of those stages alone: the later stages' metrics files in such an experiment are the
# commit's, not its own.
CAM_ONLY = "cam-"
CAM_STAGE = "make_cam"
CAM_METRICS_FILES = (
    "data/metrics/train_cls/metrics.json",
    "data/metrics/train_recam/metrics.json",
    "data/metrics/make_cam.json",
)

# Experiment names are git refs, hence "affinitycrf" for refine.method affinity+crf.
METHODS = {
    "method-crf": {"refine.method": "crf"},
    "method-affinity": {"refine.method": "affinity"},
    "method-affinitycrf": {"refine.method": "affinity+crf"},
}

METHOD_METRICS = [
    ("CAM mIoU", "data/metrics/make_cam.json", "miou"),
    ("pseudo-mask mIoU", "data/metrics/refine.json", "miou"),
    ("pseudo-mask precision", "data/metrics/refine.json", "fg_precision"),
    ("pseudo-mask recall", "data/metrics/refine.json", "fg_recall"),
    ("segmentation mIoU", "data/metrics/evaluate.json", "miou"),
]


@dataclass(frozen=True)
class Study:
    """Variants (name -> param overrides), the metrics to tabulate, the output path; ``base``:
    overrides every variant shares (the data regime), ``prefix``: of the experiment names, so
    that studies on different data never share one; ``baseline``: the variant the others are
    compared with per seed (none: no paired table)."""

    variants: dict[str, dict[str, str]]
    metrics: list[tuple[str, str, str]]
    out: Path
    base: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    baseline: str | None = None
    # (variant, reference) pairs also compared per seed, e.g. an option against the default
    also_paired: tuple[tuple[str, str], ...] = ()


STUDIES = {
    "destruction": Study(
        VARIANTS,
        METRICS,
        Path("data/ablation"),
        baseline="baseline",
        also_paired=(("ldm-mdc-branch", "ldm-mdc"),),
    ),
    "constellation": Study(
        CONSTELLATION_VARIANTS,
        METRICS,
        Path("data/constellation_ablation"),
        base=CONSTELLATION,
        prefix="constellation-",
        baseline="baseline",
        also_paired=(("ldm-mdc-branch", "ldm-mdc"),),
    ),
    "refine": Study(METHODS, METHOD_METRICS, Path("data/refine_methods")),
    # the controls beside the baseline and the paper's method on the default demo
    "controls": Study(
        CONTROL_VARIANTS,
        METRICS,
        Path("data/controls"),
        prefix="demo-",
        baseline="baseline",
    ),
}

# `dvc exp show` states of experiments whose metrics are their own (None: run outside the queue)
FINISHED = (None, "Success")
NAME = re.compile(r"^(?P<variant>[a-z0-9-]+)-seed(?P<seed>\d+)$")

app = typer.Typer(add_completion=False, help=__doc__)


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
        raise ValueError("no experiment named <variant>-seed<N> found; queue and run them first")
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


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("variant", "seed")]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of every metric per variant, from :func:`runs`."""
    grouped = frame.groupby("variant", sort=False)
    table = grouped[_metric_columns(frame)].agg(["mean", "std"])
    table.insert(0, ("seeds", ""), grouped["seed"].nunique())
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """Each metric as `mean ± std` (the mean alone for a single seed), one row per variant."""
    shown = pd.DataFrame(index=table.index)
    shown["seeds"] = table[("seeds", "")]
    for column in dict.fromkeys(c for c, _ in table.columns if c != "seeds"):
        mean, std = table[(column, "mean")], table[(column, "std")]
        shown[column] = [
            f"{m:.3f}" if pd.isna(s) else f"{m:.3f} ± {s:.3f}"
            for m, s in zip(mean, std, strict=True)
        ]
    return shown.to_markdown()


def paired(frame: pd.DataFrame, baseline: str, columns: list[str]) -> pd.DataFrame:
    """Each variant minus ``baseline`` on the same seed, per metric of ``columns``: the
    differences (in mIoU points), their mean, a 95 % t interval of the mean, and the exact
    two-sided Wilcoxon signed-rank p-value. Seeds run for only one of the two are left out.

    With five seeds the smallest possible Wilcoxon p is 0.0625 (all five differences of one
    sign), which is why the interval is given beside it.
    """
    from scipy import stats

    base = frame[frame["variant"] == baseline].set_index("seed")
    rows = []
    for variant, group in frame[frame["variant"] != baseline].groupby("variant", sort=False):
        group = group.set_index("seed")
        seeds = sorted(set(group.index) & set(base.index))
        for column in columns:
            diff = 100 * (group.loc[seeds, column] - base.loc[seeds, column]).to_numpy()
            row = {"variant": variant, "metric": column, "seeds": len(seeds)}
            row["differences"] = " ".join(f"{d:+.1f}" for d in diff)
            row["mean"] = diff.mean() if len(diff) else float("nan")
            if len(diff) >= 2:
                half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                row["95% CI"] = f"[{row['mean'] - half:+.1f}, {row['mean'] + half:+.1f}]"
                nonzero = diff[diff != 0]
                row["Wilcoxon p"] = (
                    stats.wilcoxon(nonzero, method="exact").pvalue if len(nonzero) else 1.0
                )
            rows.append(row)
    return pd.DataFrame(rows)


def paired_markdown(differences: pd.DataFrame) -> str:
    """:func:`paired` as a markdown table, every number as written there (the differences are
    text: left to tabulate, a single one would be read back as a number and reformatted)."""
    shown = differences.copy()
    shown["mean"] = [f"{m:+.1f}" for m in shown["mean"]]
    if "Wilcoxon p" in shown:
        shown["Wilcoxon p"] = [f"{p:.3f}" for p in shown["Wilcoxon p"]]
    return shown.fillna("").to_markdown(index=False, disable_numparse=True)


StudyOption = Annotated[
    str, typer.Option(help="destruction, constellation, refine or controls.")
]
SeedsOption = Annotated[
    list[int] | None,
    typer.Option(
        "--seed",
        help="Only this training seed (repeat for several): e.g. the seeds "
        "every variant has finished.",
    ),
]
KeepOption = Annotated[
    bool,
    typer.Option(
        help="Keep the runs already in the output's runs file that `dvc exp show` does not "
        "list (experiments of another clone or machine); a run in both is read again."
    ),
]
CamOnlyOption = Annotated[
    bool,
    typer.Option(
        help="Experiments up to make_cam only, named cam-<...>: the CAM rows first, the whole "
        "runs (whose first stages DVC's run cache then restores) later; tables <out>_cam."
    ),
]
RevOption = Annotated[
    list[str] | None,
    typer.Option(help="A commit the experiments were queued from (HEAD); repeat for several."),
]


def _check(study: str) -> str:
    if study not in STUDIES:
        raise typer.BadParameter(f"{study!r}: choose one of {', '.join(STUDIES)}")
    return study


@app.command()
def queue(
    seeds: Annotated[list[int], typer.Option(help="Training seeds.")] = [0, 1, 2],  # noqa: B006
    study: StudyOption = "destruction",
    variant: Annotated[
        list[str] | None,
        typer.Option(help="Only this variant (repeat for several, queued in this order)."),
    ] = None,
    cam_only: CamOnlyOption = False,
):
    """Queue one DVC experiment per variant and seed."""
    unknown = set(variant or []) - set(STUDIES[_check(study)].variants)
    if unknown:
        raise typer.BadParameter(f"{sorted(unknown)}: not variants of the {study} study")
    for command in queue_commands(seeds, study, variant, cam_only):
        subprocess.run(command, check=True)


@app.command()
def collect(
    study: StudyOption = "destruction",
    out: Annotated[Path | None, typer.Option(help="Output path without suffix.")] = None,
    rev: RevOption = None,
    seeds: SeedsOption = None,
    keep: KeepOption = False,
    cam_only: CamOnlyOption = False,
):
    """Collect the experiments' metrics into <out>.csv and <out>.md (per variant) and
    <out>_runs.csv (per experiment)."""
    import dvc.api

    out = out or STUDIES[_check(study)].out
    if cam_only:
        out = out.with_name(f"{out.name}_cam")
    frame = runs(dvc.api.exp_show(revs=rev), study, seeds, not keep, cam_only)
    compared = ["CAM mIoU"] if cam_only else PAIRED
    if keep:
        frame = with_recorded(frame, out.with_name(f"{out.name}_runs.csv"), study, seeds)
    table = summarize(frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    table.to_csv(out.with_suffix(".csv"))
    markdown = to_markdown(table)
    baseline = STUDIES[study].baseline
    if baseline is not None:
        differences = paired(frame, baseline, compared)
        differences.to_csv(out.with_name(f"{out.name}_paired.csv"), index=False)
        markdown += "\n\nPaired against the baseline (mIoU points):\n\n" + paired_markdown(
            differences
        )
    for variant, reference in STUDIES[study].also_paired:
        both = frame[frame["variant"].isin([variant, reference])]
        if both["variant"].nunique() == 2:
            differences = paired(both, reference, compared)
            differences.to_csv(
                out.with_name(f"{out.name}_{variant}_vs_{reference}.csv"), index=False
            )
            markdown += f"\n\n{variant} paired against {reference} (mIoU points):\n\n"
            markdown += paired_markdown(differences)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


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


@app.command()
def profile(
    out: Annotated[
        Path | None, typer.Option(help="Output path without suffix (<study's out>_profile).")
    ] = None,
    rev: RevOption = None,
    seeds: SeedsOption = None,
    study: StudyOption = "destruction",
    keep: KeepOption = False,
    cam_only: CamOnlyOption = False,
):
    """Where the CAM of each finished experiment of the study is strong (synthetic
    data only): mean normalised CAM and share above the chosen threshold on parts, bodies and
    background, per run (<out>_runs.csv) and per variant (<out>.md, <out>.csv). The CAMs of a
    cam-only experiment are those of its whole run: the same output file either way."""
    import dvc.api

    spec = STUDIES[_check(study)]
    out = out or spec.out.with_name(f"{spec.out.name}_profile")
    records = [
        {"variant": variant, "seed": seed, **experiment_profile(row["rev"])}
        for row, variant, seed in finished(
            dvc.api.exp_show(revs=rev), _check(study), seeds, not keep, cam_only
        )
    ]
    frame = pd.DataFrame(records)
    if keep:
        frame = with_recorded(frame, out.with_name(f"{out.name}_runs.csv"), study, seeds)
    table = summarize(frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    table.to_csv(out.with_suffix(".csv"))
    markdown = to_markdown(table)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


BRANCHES = {"ldm": "LDM (w^.F)", "plain": "plain (w.F)", "mdc": "MDC (w~.F~)"}


def experiment_branches(rev: str) -> tuple[list[dict], list[dict], float]:
    """For the experiment at git revision ``rev`` (synthetic data): each branch's own val mAP on
    intact and on region-confused images (at the experiment's cls.ldm grid and k), each
    branch's own training loss per epoch (DVCLive's ``train/loss_<branch>``; a one-branch
    classifier's is its loss), and the linear probe's accuracy on the bodies."""
    import tempfile

    import torch
    from dvc.api import DVCFileSystem

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from body_probe import body_probe
    from branch_profile import branch_map

    from destseg.dataset.layout import VOCLayout
    from destseg.dataset.sources.synthetic import SyntheticSpec
    from destseg.dataset.torch_dataset import VOCDataset
    from destseg.models.classifier import Classifier, branch_names
    from destseg.models.model_file import load_model

    fs = DVCFileSystem(".", rev=rev)
    config = yaml.safe_load(fs.read_text("params.yaml"))
    with tempfile.TemporaryDirectory() as work:
        fs.get("data/dataset", f"{work}/dataset", recursive=True)
        fs.get_file("data/train_cls/model.pt", f"{work}/model.pt")
        model, stored = load_model(Path(work, "model.pt"), Classifier, torch.device("cpu"))
        model.eval()
        layout = VOCLayout(Path(work, "dataset"))
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


@app.command()
def branches(
    out: Annotated[
        Path | None, typer.Option(help="Output path without suffix (<study's out>_branches).")
    ] = None,
    rev: RevOption = None,
    seeds: SeedsOption = None,
    study: StudyOption = "destruction",
    keep: KeepOption = False,
):
    """What each branch of each finished experiment's classifier learned (synthetic data
    only): its own val mAP on intact and region-confused images, its own training loss per
    epoch, and a linear probe of the encoder on the bodies (benchmarks/body_probe.py). Writes
    <out>_runs.csv (mAPs and probe per run and branch), <out>_losses.csv (per epoch) and
    <out>.md (mean ± std per variant and branch)."""
    import dvc.api

    spec = STUDIES[_check(study)]
    out = out or spec.out.with_name(f"{spec.out.name}_branches")
    maps, losses = [], []
    for row, variant, seed in finished(dvc.api.exp_show(revs=rev), study, seeds, not keep):
        run_maps, run_losses, probe = experiment_branches(row["rev"])
        tag = {"variant": variant, "seed": seed}
        maps += [{**tag, **m, "body probe accuracy": probe} for m in run_maps]
        losses += [{**tag, **loss} for loss in run_losses]
        print(f"{variant} seed {seed}: done")
    maps, losses = pd.DataFrame(maps), pd.DataFrame(losses)
    if keep:
        maps = with_recorded(maps, out.with_name(f"{out.name}_runs.csv"), study, seeds)
        losses = with_recorded(losses, out.with_name(f"{out.name}_losses.csv"), study, seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    maps.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    losses.to_csv(out.with_name(f"{out.name}_losses.csv"), index=False, float_format="%.6f")
    markdown = branch_markdown(maps, losses)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


def branch_markdown(maps: pd.DataFrame, losses: pd.DataFrame) -> str:
    """Mean ± std over seeds: per variant and branch, the own mAPs; per variant, the encoder's
    body probe; per variant and branch, the own loss at the first, middle and last epochs."""
    keys = ["variant", "branch"]
    grouped = maps.groupby(keys, sort=False)
    table = grouped[["mAP intact", "mAP confused"]].agg(["mean", "std"])
    table.insert(0, ("seeds", ""), grouped["seed"].nunique())
    runs = maps.drop_duplicates(["variant", "seed"]).groupby("variant", sort=False)
    probe = runs[["body probe accuracy"]].agg(["mean", "std"])
    probe.insert(0, ("seeds", ""), runs["seed"].nunique())
    last = int(losses["epoch"].max())
    epochs = sorted({1, (last + 1) // 2, last})
    wide = losses[losses["epoch"].isin(epochs)].pivot_table(
        index=["variant", "seed", "branch"], columns="epoch", values="loss"
    )
    wide.columns = [f"own loss, epoch {e}" for e in wide.columns]
    by_branch = wide.reset_index().groupby(keys, sort=False)[list(wide.columns)]
    loss_table = pd.concat(
        [table[[("seeds", "")]], by_branch.agg(["mean", "std"]).reindex(table.index)], axis=1
    )
    for frame in (table, loss_table):
        frame.index = [f"{variant}: {branch}" for variant, branch in frame.index]
    return "\n\n".join(
        [
            "Each branch's own val mAP, on intact and on region-confused images:",
            to_markdown(table),
            "The encoder's linear probe on the bodies (val accuracy):",
            to_markdown(probe),
            "Each branch's own training loss:",
            to_markdown(loss_table),
        ]
    )


if __name__ == "__main__":
    app()
