"""The command: ``python -m studies.ablation queue|collect|profile|branches`` (see the package)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from stages.cli import InputError, reported
from studies.ablation import __doc__ as DOC
from studies.ablation.designs import PAIRED, STUDIES
from studies.ablation.experiments import (
    experiment_branch_cams,
    experiment_branches,
    experiment_profile,
    finished,
    none_finished,
    queue_commands,
    runs,
    with_recorded,
)
from studies.ablation.tables import (
    branch_cams_markdown,
    branch_markdown,
    paired,
    paired_markdown,
    profile_markdown,
    summarize,
    to_markdown,
)

app = typer.Typer(add_completion=False, help=DOC)


StudyOption = Annotated[str, typer.Option(help="destruction, constellation, refine or controls.")]
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
        "runs (whose first stages DVC's run cache then restores) later; by default their "
        "tables go to <study's out>_cam[_<table>], beside the whole runs' tables."
    ),
]
RevOption = Annotated[
    list[str] | None,
    typer.Option(help="A commit the experiments were queued from (HEAD); repeat for several."),
]


def default_out(study_out: Path, table: str, cam_only: bool) -> Path:
    """<study's out>[_cam][_<table>]: the tables of cam-only experiments never overwrite those
    of the study's whole runs, which the docs quote."""
    stem = f"{study_out.name}_cam" if cam_only else study_out.name
    return study_out.with_name(f"{stem}_{table}" if table else stem)


def _in_a_dvc_repository() -> None:
    here = Path.cwd().resolve()
    if not any((folder / ".dvc").is_dir() for folder in (here, *here.parents)):
        raise InputError(
            f"{here}: not inside a DVC repository; run this from the project's checkout"
        )


def _experiments(rev: list[str] | None) -> list[dict]:
    """``dvc exp show``'s rows of the experiments queued from ``rev`` (HEAD)."""
    import dvc.api

    _in_a_dvc_repository()
    return dvc.api.exp_show(revs=rev)


def _found(frame: pd.DataFrame, study: str, cam_only: bool) -> pd.DataFrame:
    if frame.empty:
        raise ValueError(none_finished(study, cam_only))
    return frame


def _check(study: str) -> str:
    if study not in STUDIES:
        raise typer.BadParameter(f"{study!r}: choose one of {', '.join(STUDIES)}")
    return study


@app.command()
@reported
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
    if any(not 0 <= seed < 2**63 for seed in seeds):
        raise typer.BadParameter(f"{seeds}: seeds are 0 to 2^63 - 1, as params.yaml's seed")
    _in_a_dvc_repository()
    for command in queue_commands(seeds, study, variant, cam_only):
        if subprocess.run(command, check=False).returncode != 0:
            raise InputError(f"{' '.join(command[:4])} failed (DVC's message is above)")


@app.command()
@reported
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
    out = out or default_out(STUDIES[_check(study)].out, "", cam_only)
    frame = runs(_experiments(rev), study, seeds, not keep, cam_only)
    compared = ["CAM mIoU"] if cam_only else PAIRED
    if keep:
        frame = with_recorded(frame, out.with_name(f"{out.name}_runs.csv"), study, seeds)
    frame = _found(frame, study, cam_only)
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


@app.command()
@reported
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
    spec = STUDIES[_check(study)]
    out = out or default_out(spec.out, "profile", cam_only)
    records = [
        {"variant": variant, "seed": seed, **experiment_profile(row["rev"])}
        for row, variant, seed in finished(_experiments(rev), study, seeds, not keep, cam_only)
    ]
    frame = pd.DataFrame(records)
    if keep:
        frame = with_recorded(frame, out.with_name(f"{out.name}_runs.csv"), study, seeds)
    frame = _found(frame, study, cam_only)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    table = summarize(frame)
    table.to_csv(out.with_suffix(".csv"))
    markdown, differences = profile_markdown(table, frame, spec.baseline)
    if not differences.empty:
        differences.to_csv(out.with_name(f"{out.name}_paired.csv"), index=False)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


@app.command()
@reported
def branches(
    out: Annotated[
        Path | None, typer.Option(help="Output path without suffix (<study's out>_branches).")
    ] = None,
    rev: RevOption = None,
    seeds: SeedsOption = None,
    study: StudyOption = "destruction",
    keep: KeepOption = False,
    cam_only: CamOnlyOption = False,
):
    """What each branch of each finished experiment's classifier learned (synthetic data
    only): its own val mAP on intact and region-confused images, its own training loss per
    epoch, and a linear probe of the encoder on the bodies (studies/body_probe.py). Writes
    <out>_runs.csv (mAPs and probe per run and branch), <out>_losses.csv (per epoch) and
    <out>.md (mean ± std per variant and branch)."""

    spec = STUDIES[_check(study)]
    out = out or default_out(spec.out, "branches", cam_only)
    maps, losses = [], []
    rows = _experiments(rev)
    for row, variant, seed in finished(rows, study, seeds, not keep, cam_only):
        run_maps, run_losses, probe = experiment_branches(row["rev"])
        tag = {"variant": variant, "seed": seed}
        maps += [{**tag, **m, "body probe accuracy": probe} for m in run_maps]
        losses += [{**tag, **loss} for loss in run_losses]
        print(f"{variant} seed {seed}: done")
    maps, losses = pd.DataFrame(maps), pd.DataFrame(losses)
    if keep:
        maps = with_recorded(maps, out.with_name(f"{out.name}_runs.csv"), study, seeds)
        losses = with_recorded(losses, out.with_name(f"{out.name}_losses.csv"), study, seeds)
    maps = _found(maps, study, cam_only)
    out.parent.mkdir(parents=True, exist_ok=True)
    maps.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    losses.to_csv(out.with_name(f"{out.name}_losses.csv"), index=False, float_format="%.6f")
    markdown = branch_markdown(maps, losses)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


@app.command("branch-cams")
@reported
def branch_cams(
    out: Annotated[
        Path | None,
        typer.Option(help="Output path without suffix (<study's out>_branch_cams)."),
    ] = None,
    rev: RevOption = None,
    seeds: SeedsOption = None,
    study: StudyOption = "destruction",
    variant: Annotated[
        list[str] | None, typer.Option(help="Only this variant (repeat for several).")
    ] = None,
    keep: KeepOption = False,
    cam_only: CamOnlyOption = False,
):
    """Each branch's term of each finished experiment's CAM as a CAM of its own, beside the
    stacked CAM, each at its own threshold chosen on splits.tune (synthetic data only): mIoU
    and part / body / background shares on splits.score_cams (studies/branch_cams.py). Writes
    <out>_runs.csv (per run and branch) and <out>.md (mean ± std per variant and branch)."""

    spec = STUDIES[_check(study)]
    out = out or default_out(spec.out, "branch_cams", cam_only)
    records = []
    rows = _experiments(rev)
    for row, name, seed in finished(rows, study, seeds, not keep, cam_only):
        if variant and name not in variant:
            continue
        records += [
            {"variant": name, "seed": seed, **r} for r in experiment_branch_cams(row["rev"])
        ]
        print(f"{name} seed {seed}: done")
    frame = pd.DataFrame(records)
    if keep:
        frame = with_recorded(frame, out.with_name(f"{out.name}_runs.csv"), study, seeds)
    frame = _found(frame, study, cam_only)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out.with_name(f"{out.name}_runs.csv"), index=False, float_format="%.6f")
    markdown = branch_cams_markdown(frame)
    out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    app()
