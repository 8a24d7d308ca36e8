"""The multi-seed studies: what they queue, and the tables they make of the runs, by hand."""

import math

import pandas as pd
import pytest

from studies.ablation import designs, experiments, tables


def test_queue_commands_cover_every_variant_and_seed():
    commands = experiments.queue_commands([0, 1, 2])
    assert len(commands) == 3 * len(designs.VARIANTS) == 18
    names = [c[c.index("-n") + 1] for c in commands]
    assert len(set(names)) == 18 and "ldm-mdc-seed2" in names
    assert all(experiments.NAME.match(name)["variant"] in designs.VARIANTS for name in names)
    assert "cls.ldm.grid=8" in commands[names.index("ldm-grid8-seed0")]
    baseline = commands[names.index("baseline-seed1")]
    assert "cls.ldm.enabled=false" in baseline and "cls.mdc.enabled=false" in baseline
    assert "seed=1" in baseline and baseline[:5] == ["dvc", "exp", "run", "--queue", "-n"]
    assert names[:6] == [f"{variant}-seed0" for variant in designs.VARIANTS]  # seed by seed
    assert "cls.branch_loss=1.0" in commands[names.index("ldm-mdc-branch-seed2")]


def _row(name, cam, seg, map_=0.9):
    return {
        "Experiment": name,
        "val.map": map_,
        "data/metrics/make_cam.json:miou": cam,
        "data/metrics/make_cam.json:fg_recall": 0.8,
        "data/metrics/refine.json:miou": 0.6,
        "data/metrics/evaluate.json:miou": seg,
    }


def test_summary_means_and_standard_deviations_by_hand():
    rows = [
        _row("baseline-seed0", 0.5, 0.6),
        _row("baseline-seed1", 0.7, 0.4),
        {**_row("ldm-seed0", 0.6, 0.5), "State": "Success"},
        _row("seg-gt", 0.1, 0.1),  # not part of the ablation
        {**_row("ldm-seed1", 0.9, 0.9), "State": "Running"},  # stale metrics until it finishes
        {**_row("ldm-seed2", 0.9, 0.9), "State": "Queued"},
        {**_row("ldm-seed3", 0.9, 0.9), "State": "Failed"},
        {"Experiment": None, "rev": "workspace"},
    ]
    frame = experiments.runs(rows)
    assert list(zip(frame["variant"], frame["seed"], strict=True)) == [
        ("baseline", 0),
        ("baseline", 1),
        ("ldm", 0),
    ]
    assert list(experiments.runs(rows, seeds=[1])["seed"]) == [1]  # the seeds asked for only
    table = tables.summarize(frame)
    assert list(table.index) == ["baseline", "ldm"]
    assert table.loc["baseline", ("seeds", "")] == 2
    assert table.loc["baseline", ("CAM mIoU", "mean")] == pytest.approx(0.6)
    assert table.loc["baseline", ("CAM mIoU", "std")] == pytest.approx(math.sqrt(0.02))
    assert table.loc["baseline", ("segmentation mIoU", "mean")] == pytest.approx(0.5)
    assert math.isnan(table.loc["ldm", ("CAM mIoU", "std")])
    markdown = tables.to_markdown(table)
    assert "0.600 ± 0.141" in markdown
    ldm_line = next(line for line in markdown.splitlines() if line.startswith("| ldm "))
    assert "0.600" in ldm_line and "±" not in ldm_line


def test_summary_without_ablation_experiments_is_an_error():
    with pytest.raises(ValueError, match="no finished experiment"):
        experiments.runs([{"Experiment": "other"}])


def test_the_refine_study_queues_and_collects_the_methods():
    commands = experiments.queue_commands([0, 1], study="refine")
    names = [c[c.index("-n") + 1] for c in commands]
    assert sorted(names) == sorted(
        f"method-{m}-seed{s}" for m in ("crf", "affinity", "affinitycrf") for s in (0, 1)
    )
    both = commands[names.index("method-affinitycrf-seed1")]
    assert "refine.method=affinity+crf" in both and "seed=1" in both
    rows = [
        {**_row("method-affinity-seed0", 0.5, 0.7), "data/metrics/refine.json:fg_precision": 0.8},
        {**_row("method-crf-seed0", 0.5, 0.6), "data/metrics/refine.json:fg_precision": 0.9},
        _row("baseline-seed0", 0.5, 0.6),  # the other study
    ]
    frame = experiments.runs(rows, study="refine")
    assert list(frame["variant"]) == ["method-crf", "method-affinity"]  # the study's order
    assert list(frame["pseudo-mask precision"]) == [0.9, 0.8]
    table = tables.summarize(frame)
    assert "classifier mAP" not in table.columns.get_level_values(0)
    assert table.loc["method-affinity", ("segmentation mIoU", "mean")] == 0.7


def test_paired_differences_by_hand():
    frame = pd.DataFrame(
        {
            "variant": ["baseline"] * 4 + ["ldm"] * 3,
            "seed": [0, 1, 2, 3, 0, 1, 2],  # seed 3 has no ldm run: left out of the pairs
            "CAM mIoU": [0.50, 0.70, 0.60, 0.99, 0.55, 0.73, 0.58],
        }
    )
    row = tables.paired(frame, "baseline", ["CAM mIoU"]).iloc[0]
    assert row["variant"] == "ldm" and row["seeds"] == 3
    assert row["differences"] == "+5.0 +3.0 -2.0"
    assert row["mean"] == pytest.approx(2.0)
    # t(0.975, 2) = 4.303, std of (5, 3, -2) = sqrt(13): half-width 8.958
    assert row["95% CI"] == "[-7.0, +11.0]"
    # ranks 3, 2, 1 with one negative: W- = 1; exact two-sided p = 2 * 2/8
    assert row["Wilcoxon p"] == pytest.approx(0.5)


def test_with_the_baseline_alone_there_is_nothing_to_pair():
    frame = pd.DataFrame({"variant": ["baseline"], "seed": [0], "CAM mIoU": [0.5]})
    assert tables.paired_markdown(tables.paired(frame, "baseline", ["CAM mIoU"])).startswith(
        "(no variant"
    )


def test_paired_markdown_keeps_the_differences_as_written():
    frame = pd.DataFrame({"variant": ["baseline", "ldm"], "seed": [0, 0], "CAM mIoU": [0.5, 0.499]})
    markdown = tables.paired_markdown(tables.paired(frame, "baseline", ["CAM mIoU"]))
    row = markdown.splitlines()[2]
    assert "| -0.1 " in row and "-0.100" not in row  # one seed: no interval, no p


def test_the_constellation_study_runs_every_variant_on_its_regime():
    commands = experiments.queue_commands(
        [0, 1], study="constellation", variants=["baseline", "ldm-mdc-branch"]
    )
    names = [c[c.index("-n") + 1] for c in commands]
    assert names == [
        "constellation-baseline-seed0",
        "constellation-ldm-mdc-branch-seed0",
        "constellation-baseline-seed1",
        "constellation-ldm-mdc-branch-seed1",
    ]
    for command in commands:  # the regime is on every variant, the variant's own keys on top
        assert "data.synthetic.part_style=constellation" in command
        assert "cls.ldm.k=2" in command
    assert "cls.branch_loss=1.0" in commands[1] and "cls.ldm.enabled=false" in commands[0]
    rows = [
        {**_row("constellation-baseline-seed0", 0.5, 0.6), "State": "Success"},
        {**_row("baseline-seed0", 0.9, 0.9), "State": "Success"},  # the demo's, not this study's
        {**_row("constellation-ldm-mdc-seed0", 0.4, 0.5), "State": "Success"},
    ]
    frame = experiments.runs(rows, study="constellation")
    assert list(frame["variant"]) == ["baseline", "ldm-mdc"]
    assert list(frame["CAM mIoU"]) == [0.5, 0.4]
    assert list(experiments.runs(rows)["CAM mIoU"]) == [0.9]  # and the demo's study only its own


def test_the_branch_tables_average_per_variant_and_branch():
    maps = pd.DataFrame(
        [
            ("ldm-mdc", 0, "LDM (w^.F)", 0.3, 0.2, 0.7),
            ("ldm-mdc", 0, "plain (w.F)", 0.9, 0.7, 0.7),
            ("ldm-mdc", 1, "LDM (w^.F)", 0.5, 0.4, 0.9),
            ("ldm-mdc", 1, "plain (w.F)", 0.9, 0.7, 0.9),
        ],
        columns=["variant", "seed", "branch", "mAP intact", "mAP confused", "body probe accuracy"],
    )
    losses = pd.DataFrame(
        [
            ("ldm-mdc", seed, branch, epoch, loss + seed)
            for seed in (0, 1)
            for branch in ("LDM (w^.F)", "plain (w.F)")
            for epoch, loss in ((1, 0.5), (2, 0.4), (3, 0.3))
        ],
        columns=["variant", "seed", "branch", "epoch", "loss"],
    )
    markdown = tables.branch_markdown(maps, losses)
    ldm = next(line for line in markdown.splitlines() if line.startswith("| ldm-mdc: LDM"))
    assert "0.400 ± 0.141" in ldm and "0.300 ± 0.141" in ldm  # mAPs over the two seeds
    assert "| ldm-mdc   |       2 | 0.800 ± 0.141" in markdown  # the probe once per run
    assert "own loss, epoch 1" in markdown and "own loss, epoch 3" in markdown
    assert "1.000 ± 0.707" in markdown  # epoch 1: 0.5 and 1.5


def test_recorded_runs_fill_in_what_dvc_exp_show_lacks(tmp_path):
    """Runs of an earlier session stay (in variant order, then seed); a run both lists is taken
    from the experiment; a seed filter applies to the record too."""
    record = tmp_path / "study_runs.csv"
    pd.DataFrame(
        [
            {"variant": "ldm-mdc", "seed": 0, "CAM mIoU": 0.40},
            {"variant": "baseline", "seed": 1, "CAM mIoU": 0.51},
            {"variant": "baseline", "seed": 0, "CAM mIoU": 0.50},
            {"variant": "baseline", "seed": 7, "CAM mIoU": 0.99},
        ]
    ).to_csv(record, index=False)
    new = experiments.runs([_row("ldm-seed0", 0.45, 0.5), _row("baseline-seed1", 0.55, 0.6)])
    merged = experiments.with_recorded(new, record, "destruction", seeds=[0, 1])
    assert list(zip(merged["variant"], merged["seed"], strict=True)) == [
        ("baseline", 0),
        ("baseline", 1),
        ("ldm", 0),
        ("ldm-mdc", 0),
    ]
    assert merged["CAM mIoU"].tolist() == [0.50, 0.55, 0.45, 0.40]
    assert experiments.with_recorded(new, tmp_path / "absent.csv", "destruction") is new
    # nothing new: the record alone; nothing anywhere: an error
    empty = experiments.runs([], "destruction", required=False)
    assert len(experiments.with_recorded(empty, record, "destruction")) == 4
    with pytest.raises(ValueError, match="none in"):
        experiments.with_recorded(empty, record, "destruction", seeds=[5])


def test_the_controls_study_queues_each_control_on_the_plain_classifier():
    commands = experiments.queue_commands([3], study="controls")
    names = [c[c.index("-n") + 1] for c in commands]
    assert names == [f"demo-{v}-seed3" for v in ("baseline", "recam", "puzzle", "ldm-mdc")]
    recam, puzzle = commands[1], commands[2]
    for command in (recam, puzzle):
        assert "cls.ldm.enabled=false" in command and "cls.mdc.enabled=false" in command
    assert "recam.enabled=true" in recam and "cls.puzzle.enabled=true" not in recam
    assert "cls.puzzle.enabled=true" in puzzle and "recam.enabled=true" not in puzzle
    regime = experiments.queue_commands([0], study="constellation", variants=["recam", "puzzle"])
    assert all("data.synthetic.part_style=constellation" in c for c in regime)


def test_cam_only_experiments_stop_at_make_cam_and_are_tabulated_on_its_metrics_alone():
    (command,) = experiments.queue_commands([0], "controls", ["recam"], cam_only=True)
    assert command[command.index("-n") + 1 : command.index("-n") + 3] == [
        "cam-demo-recam-seed0",
        "make_cam",
    ]
    rows = [
        _row("cam-demo-baseline-seed0", 0.5, 0.6),
        _row("demo-baseline-seed0", 0.9, 0.9),  # a whole run: not a cam-only one
        {
            **_row("cam-demo-recam-seed0", 0.6, 0.9),
            "data/metrics/train_recam/metrics.json:val.map": 0.8,
        },
    ]
    frame = experiments.runs(rows, "controls", cam_only=True)
    assert list(frame["variant"]) == ["baseline", "recam"] and list(frame["CAM mIoU"]) == [0.5, 0.6]
    # the later stages' metrics files are the commit's in such an experiment: not read
    assert "segmentation mIoU" not in frame and "pseudo-mask mIoU" not in frame
    assert frame["ReCAM phase mAP"].tolist()[1] == 0.8
    assert list(experiments.runs(rows, "controls")["CAM mIoU"]) == [0.9]


def test_the_branch_cam_table_averages_per_variant_and_branch_in_the_runs_order():
    frame = pd.DataFrame(
        [
            ("ldm-mdc", 0, "stacked", 0.30, 0.50),
            ("ldm-mdc", 0, "ldm", 0.20, 0.70),
            ("ldm-mdc", 1, "stacked", 0.40, 0.60),
            ("ldm-mdc", 1, "ldm", 0.20, 0.90),
        ],
        columns=["variant", "seed", "branch", "threshold", "body share"],
    )
    markdown = tables.branch_cams_markdown(frame)
    lines = [line for line in markdown.splitlines() if line.startswith("| ldm-mdc")]
    assert lines[0].startswith("| ldm-mdc: stacked") and lines[1].startswith("| ldm-mdc: ldm")
    assert "0.350 ± 0.071" in lines[0] and "0.800 ± 0.141" in lines[1]


def test_the_pretrained_setting_runs_the_controls_on_a_pretrained_encoder_in_its_regime():
    commands = experiments.queue_commands([1], "constellation-pretrained", cam_only=True)
    names = [c[c.index("-n") + 1] for c in commands]
    assert names[0] == "cam-constellation-pretrained-baseline-seed1" and len(names) == 4
    for command in commands:
        assert "pretrain.enabled=true" in command
        assert "data.synthetic.part_style=constellation" in command
    # its experiments are not the constellation study's, nor the other way round
    rows = [
        _row("constellation-pretrained-baseline-seed0", 0.7, 0.6),
        _row("constellation-baseline-seed0", 0.5, 0.6),
    ]
    assert list(experiments.runs(rows, "constellation")["CAM mIoU"]) == [0.5]
    assert list(experiments.runs(rows, "constellation-pretrained")["CAM mIoU"]) == [0.7]


def test_the_profile_pairs_each_share_against_the_baseline_by_seed():
    frame = pd.DataFrame(
        {
            "variant": ["baseline", "baseline", "puzzle", "puzzle", "recam"],
            "seed": [0, 1, 0, 1, 0],
            "part share": [0.9, 0.8, 0.7, 0.7, 0.9],
            "body share": [0.50, 0.60, 0.55, 0.62, 0.40],
            "background share": [0.1, 0.1, 0.1, 0.1, 0.2],
        }
    )
    markdown, differences = tables.profile_markdown(tables.summarize(frame), frame, "baseline")
    body = differences.set_index(["variant", "metric"]).loc[("puzzle", "body share")]
    assert body["differences"] == "+5.0 +2.0" and body["mean"] == pytest.approx(3.5)
    recam = differences.set_index(["variant", "metric"]).loc[("recam", "background share")]
    assert recam["seeds"] == 1 and recam["mean"] == pytest.approx(10.0)
    assert "Shares paired against the baseline" in markdown
    assert tables.profile_markdown(tables.summarize(frame), frame, None)[1].empty
