"""The studies' tables: mean and standard deviation per variant, per-seed paired differences with
their 95 % t interval and exact Wilcoxon p, and the per-branch tables."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
    text: left to tabulate, a single one would be read back as a number and reformatted).
    Nothing to pair yet (the baseline alone has finished) is said so."""
    if differences.empty:
        return "(no variant has finished beside the baseline yet)"
    shown = differences.copy()
    shown["mean"] = [f"{m:+.1f}" for m in shown["mean"]]
    if "Wilcoxon p" in shown:
        shown["Wilcoxon p"] = [f"{p:.3f}" for p in shown["Wilcoxon p"]]
    return shown.fillna("").to_markdown(index=False, disable_numparse=True)


SHARES = ["part share", "body share", "background share"]


def profile_markdown(
    table: pd.DataFrame, frame: pd.DataFrame, baseline: str | None
) -> tuple[str, pd.DataFrame]:
    """The CAM profile per variant (``table``, :func:`summarize` of the runs ``frame``) and,
    where the study has a baseline, each variant's shares paired against it seed by seed
    (percentage points): the controls' rule reads the mean of the body share's differences."""
    markdown = to_markdown(table)
    if baseline is None or baseline not in set(frame["variant"]):
        return markdown, pd.DataFrame()
    differences = paired(frame, baseline, SHARES)
    markdown += "\n\nShares paired against the baseline (percentage points):\n\n"
    return markdown + paired_markdown(differences), differences


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


def branch_cams_markdown(frame: pd.DataFrame) -> str:
    """Mean ± std over seeds per variant and branch (the stacked CAM first) of the threshold,
    the mIoU and the share and mean CAM of each region, from ``branch-cams``' runs."""
    keys = ["variant", "branch"]
    columns = [c for c in frame.columns if c not in (*keys, "seed")]
    grouped = frame.groupby(keys, sort=False)
    table = grouped[columns].agg(["mean", "std"])
    table.insert(0, ("seeds", ""), grouped["seed"].nunique())
    table.index = [f"{variant}: {branch}" for variant, branch in table.index]
    return to_markdown(table)
