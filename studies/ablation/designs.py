"""The studies: each one's variants (param overrides), data regime, metrics and output path.

Every variant is fixed before any of its runs (docs/results.md says when); a study's names are
what its experiments are called, so changing one orphans the runs recorded under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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

# A setting in which a control may work where a classifier trained from scratch gives it nothing
# to start from: the encoder first trained on a corpus of other classes and images (stage
# pretrain, its corpus params.yaml's), as ImageNet weights start the references' classifiers.
# Fixed, with the variants below, before any run of it.
PRETRAINED = {"pretrain.enabled": "true"}
PRETRAINED_VARIANTS = dict(CONTROL_VARIANTS)

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
    # the controls and the paper's method in the constellation regime with a pretrained encoder
    "constellation-pretrained": Study(
        PRETRAINED_VARIANTS,
        METRICS,
        Path("data/constellation_pretrained"),
        base={**CONSTELLATION, **PRETRAINED},
        prefix="constellation-pretrained-",
        baseline="baseline",
    ),
    # the controls beside the baseline and the paper's method on the default demo
    "controls": Study(
        CONTROL_VARIANTS,
        METRICS,
        Path("data/controls"),
        prefix="demo-",
        baseline="baseline",
    ),
}
