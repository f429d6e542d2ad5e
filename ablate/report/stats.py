"""Statistics of a study: scores from raw counts, seed summaries, paired deltas, Holm.

Pure functions on DataFrames, no I/O. Every score is recomputed from the pixel confusion
counts (the stored derived columns are ignored), so a summary never trusts a number that
another part computed.

The conventions (scores, macro, pairing, n < 2, zero variance, the Holm
family) are listed in `CONVENTIONS`, which the report prints.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from ablate.train.metrics import scores_from_counts

COUNTS = ("tp", "fp", "fn", "tn")
METRICS = ("dice", "iou", "precision", "recall", "accuracy")
MACRO = "macro"
BASELINE = "baseline"
ALPHA = 0.05
RUN_KEYS = ("variant", "seed")

CONVENTIONS = (
    "Scores are recomputed from the raw pixel counts, summed per run and category, with "
    "ablate.train.metrics.scores_from_counts (its 0/0 conventions: an empty mask predicted "
    "empty scores 1); the stored derived columns are not used.",
    "macro is the mean over categories of one run (variant, seed), then summarised over "
    "seeds like a category.",
    "Failed and diverged runs are left out of every statistic.",
    "Deltas are paired by seed (same seed: same split and initial weights): variant minus "
    "baseline, over the seeds where both finished ok; baseline_mean and variant_mean in "
    "deltas.csv are over those paired seeds.",
    "95% confidence interval: mean delta ± t(0.975, n-1) · sd / sqrt(n); p-value: two-sided "
    "paired t-test. With fewer than 2 paired seeds the delta has no interval and no p-value.",
    "Zero-variance deltas (every seed gives the same delta): the interval collapses to the "
    "delta; p = 0 when the delta is non-zero (infinite t statistic), p = 1 when it is zero.",
    "Holm correction: the family is the non-baseline variants of one category (or macro) and "
    "one metric; NaN p-values are left out of the family. * marks Holm-adjusted p < 0.05.",
)

DELTA_COLUMNS = [
    "variant",
    "category",
    "metric",
    "baseline_mean",
    "variant_mean",
    "mean_delta",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "n_seeds",
]


def run_scores(class_metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and category (plus `macro`), every metric, in long form.

    Args:
        class_metrics: rows with variant, seed, category, tp, fp, fn, tn (several rows of one
            run and category are summed first).

    Returns:
        Columns variant, seed, category, metric, value.
    """
    keys = [*RUN_KEYS, "category"]
    counts = class_metrics.groupby(keys, as_index=False)[list(COUNTS)].sum()
    scored = scores_from_counts(counts)
    long = scored.melt(
        id_vars=keys, value_vars=list(METRICS), var_name="metric", value_name="value"
    )
    macro = long.groupby([*RUN_KEYS, "metric"], as_index=False)["value"].mean()
    macro["category"] = MACRO
    return pd.concat([long, macro[long.columns]], ignore_index=True)


def score_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof 1, NaN for one seed) and n over seeds.

    Args:
        scores: output of `run_scores`.

    Returns:
        Columns variant, category, metric, mean, std, n.
    """
    grouped = scores.groupby(["variant", "category", "metric"], sort=False)["value"]
    summary = grouped.agg(mean="mean", std=lambda values: values.std(ddof=1), n="count")
    return summary.reset_index()


def paired_deltas(scores: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Variant minus baseline per seed, for the seeds present in both.

    Returns:
        Columns variant, category, metric, seed, variant_value, baseline_value, delta; the
        baseline itself is not a row.
    """
    base = scores[scores["variant"] == baseline][["seed", "category", "metric", "value"]]
    others = scores[scores["variant"] != baseline]
    paired = others.merge(base, on=["seed", "category", "metric"], suffixes=("", "_baseline"))
    paired = paired.rename(columns={"value": "variant_value", "value_baseline": "baseline_value"})
    paired["delta"] = paired["variant_value"] - paired["baseline_value"]
    return paired[
        ["variant", "category", "metric", "seed", "variant_value", "baseline_value", "delta"]
    ]


def delta_test(deltas: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Confidence interval and two-sided paired t-test p-value of per-seed deltas.

    Returns:
        (ci_low, ci_high, p_value); all NaN for fewer than two deltas.

    Example:
        >>> delta_test(np.array([0.1, 0.1]))
        (0.1, 0.1, 0.0)
    """
    n = len(deltas)
    if n < 2:
        return (np.nan, np.nan, np.nan)
    mean = float(np.mean(deltas))
    sem = float(np.std(deltas, ddof=1)) / np.sqrt(n)
    if sem == 0.0 or np.isclose(sem, 0.0, atol=1e-15 * max(1.0, abs(mean))):
        return (mean, mean, 1.0 if mean == 0.0 else 0.0)
    half_width = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    p_value = float(2 * scipy_stats.t.sf(abs(mean) / sem, n - 1))
    return (mean - half_width, mean + half_width, p_value)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are left out of the family and stay NaN.

    Sorted ascending, the i-th smallest (1-based) of m p-values becomes
    min(1, (m - i + 1) p_(i)), made non-decreasing by a running maximum.

    Example:
        >>> holm(np.array([0.01, 0.04, 0.03, 0.005])).round(3).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p_values, np.nan)
    present = np.flatnonzero(~np.isnan(p_values))
    m = len(present)
    if m == 0:
        return adjusted
    order = present[np.argsort(p_values[present], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p_values[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def delta_table(scores: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per (variant, category, metric) with the paired delta statistics.

    `baseline_mean` and `variant_mean` are means over the paired seeds only, so
    `mean_delta == variant_mean - baseline_mean` holds. `p_holm` is adjusted across the
    variants of one (category, metric) family.

    Returns:
        DataFrame with DELTA_COLUMNS; empty (with those columns) when nothing pairs.
    """
    paired = paired_deltas(scores, baseline)
    rows = []
    for (variant, category, metric), group in paired.groupby(
        ["variant", "category", "metric"], sort=False
    ):
        ci_low, ci_high, p_value = delta_test(group["delta"].to_numpy(dtype=float))
        rows.append(
            {
                "variant": variant,
                "category": category,
                "metric": metric,
                "baseline_mean": group["baseline_value"].mean(),
                "variant_mean": group["variant_value"].mean(),
                "mean_delta": group["delta"].mean(),
                "ci_low": ci_low,
                "ci_high": ci_high,
                "p_value": p_value,
                "n_seeds": len(group),
            }
        )
    table = pd.DataFrame(rows, columns=[c for c in DELTA_COLUMNS if c != "p_holm"])
    table["p_holm"] = np.nan
    for _, family in table.groupby(["category", "metric"], sort=False):
        table.loc[family.index, "p_holm"] = holm(family["p_value"].to_numpy(dtype=float))
    table["n_seeds"] = table["n_seeds"].astype("int64")
    return table[DELTA_COLUMNS]


def significant(p_holm: float) -> bool:
    """The significance mark rule: Holm-adjusted p below ALPHA (NaN is never significant)."""
    return bool(np.isfinite(p_holm) and p_holm < ALPHA)


def losses_at_best_epoch(history: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Train, validation and test loss of each run with the weights it kept.

    Train and validation loss come from the history at the kept epoch: the run's
    `best_epoch` when history has it, else the epoch with the lowest validation loss, else
    the last epoch (no validation loss recorded). The test loss is the runs table's
    `test_loss` (NaN for studies stored before it existed).

    Returns:
        Columns variant, seed, epoch, train_loss, val_loss, test_loss.
    """
    columns = ["variant", "seed", "epoch", "train_loss", "val_loss"]
    if history.empty:
        return pd.DataFrame(columns=[*columns, "test_loss"])
    best = runs.set_index(list(RUN_KEYS))["best_epoch"] if "best_epoch" in runs else None
    rows = []
    for (variant, seed), group in history.groupby(list(RUN_KEYS), sort=False):
        group = group.sort_values("epoch")
        wanted = best.get((variant, seed)) if best is not None else None
        chosen = group[group["epoch"] == wanted] if pd.notna(wanted) else group.iloc[0:0]
        if chosen.empty and group["val_loss"].notna().any():
            chosen = group.loc[[group["val_loss"].idxmin()]]
        if chosen.empty:
            chosen = group.iloc[[-1]]
        rows.append(chosen.iloc[0][columns].to_dict())
    losses = pd.DataFrame(rows, columns=columns)
    test = runs[[*RUN_KEYS, "test_loss"]] if "test_loss" in runs else runs[list(RUN_KEYS)]
    return losses.merge(test, on=list(RUN_KEYS), how="left").reindex(
        columns=[*columns, "test_loss"]
    )


def ranking(
    scores: pd.DataFrame,
    deltas: pd.DataFrame,
    losses: pd.DataFrame,
    metric: str,
    baseline: str = BASELINE,
) -> pd.DataFrame:
    """Variants (baseline included) ranked by their mean macro `metric`, best first.

    Returns:
        Columns rank, variant, mean, std, n_seeds, mean_delta, p_holm, train_loss, val_loss,
        test_loss, loss_gap (test_loss - train_loss), losses averaged over the variant's runs.
    """
    macro = scores[(scores["category"] == MACRO) & (scores["metric"] == metric)]
    summary = score_summary(macro).rename(columns={"n": "n_seeds"})
    summary = summary[["variant", "mean", "std", "n_seeds"]]
    macro_deltas = deltas[(deltas["category"] == MACRO) & (deltas["metric"] == metric)]
    table = summary.merge(
        macro_deltas[["variant", "mean_delta", "p_holm"]], on="variant", how="left"
    )
    table.loc[table["variant"] == baseline, "mean_delta"] = 0.0
    loss_columns = ["train_loss", "val_loss", "test_loss"]
    mean_losses = losses.groupby("variant", as_index=False)[loss_columns].mean()
    table = table.merge(mean_losses, on="variant", how="left")
    table["loss_gap"] = table["test_loss"] - table["train_loss"]
    table = table.sort_values(["mean", "variant"], ascending=[False, True], ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
