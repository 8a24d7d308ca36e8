"""Multi-seed studies as DVC experiments: the destruction-learning ablation (baseline, +LDM, +MDC,
both, +LDM with grid 8, both with each branch's own loss), the same in the constellation regime
(`--study constellation`, experiments named `constellation-<variant>-seed<N>`), the positive
controls ReCAM and Puzzle-CAM beside the baseline and LDM + MDC on the demo (`--study controls`,
`demo-<variant>-seed<N>`) and in the constellation regime, and the refinement methods
(refine.method crf, affinity, affinity+crf).

Queue the experiments (DVC experiments with -S overrides, one per variant and seed), run them,
then collect their metrics into a table (mean and standard deviation per variant):

    python -m studies.ablation queue --study destruction --seeds 0 --seeds 1 --seeds 2
    OMP_NUM_THREADS=1 dvc queue start -j 2   # `dvc queue status` to follow
    python -m studies.ablation collect --study destruction

`collect` reads every finished experiment named `<variant>-seed<N>` of the study from
`dvc exp show` (experiments of the commits they were queued from: HEAD, or each `--rev`)
and writes `<out>.csv` (one row per variant), `<out>.md` (the same as a markdown table, mean ±
standard deviation over seeds, followed by the per-seed paired differences against the
baseline, also in `<out>_paired.csv`) and `<out>_runs.csv` (one row per experiment). With
`--keep`, the runs already in `<out>_runs.csv` that `dvc exp show` does not list (the
experiments of another clone or machine: git refs do not travel with the repository) stay in
the tables, so a study can grow over several sessions. With `--cam-only` (queue, collect,
profile), experiments stop after make_cam: the CAM rows of every variant first.

On the synthetic data, `profile` adds where each experiment's CAM is strong (part, body,
background: :mod:`destseg.cam.profile`) and `branches` what each branch of its classifier
learned (:mod:`studies.branch_profile`, :mod:`studies.body_probe`).

The modules: :mod:`studies.ablation.designs` (the studies, their variants and metrics),
:mod:`studies.ablation.experiments` (queueing and reading DVC experiments),
:mod:`studies.ablation.tables` (summaries and paired differences), and the command in
``__main__``.
"""
