"""Statistics of a study: scores from raw counts, seed summaries, paired deltas, ranking.

Pure functions on DataFrames, no I/O. Every score is recomputed from the pixel confusion
counts (the stored derived columns are ignored), so a summary never trusts a number that
another part computed. The tests on the paired deltas (corrected t, Holm, verdicts, seeds
needed) are `ablate.report.inference`'s.

The conventions of scores, macro and pairing are listed in `CONVENTIONS`, which the report
prints beside the inference core's.
"""

from __future__ import annotations

import typing

import numpy as np
import pandas as pd

from ablate.config import Metric
from ablate.train.metrics import scores_from_counts

COUNTS = ("tp", "fp", "fn", "tn")
METRICS: tuple[str, ...] = typing.get_args(Metric)
"""dice, iou, precision, recall, accuracy: the grid's `analysis.metric` choices."""
MACRO = "macro"
BASELINE = "baseline"
RUN_KEYS = ("variant", "seed")

CONVENTIONS = (
    "Scores are recomputed from the raw pixel counts, summed per run and category, with "
    "ablate.train.metrics.scores_from_counts (its 0/0 conventions: an empty mask predicted "
    "empty scores 1); the stored derived columns are not used.",
    "macro is the mean over categories of one run (variant, seed), then summarised over "
    "seeds like a category.",
    "Failed and diverged runs are left out of every statistic.",
    "Deltas are paired by seed (same seed: same split, initial weights and training "
    "stream): variant minus baseline, over the seeds where both finished ok; baseline_mean "
    "and variant_mean in deltas.csv are over those paired seeds.",
)


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

    Args:
        scores: `run_scores` output.
        deltas: the delta table (`ablate.report.design.delta_table`).
        losses: `losses_at_best_epoch` output.
        metric: the metric to rank by.

    Returns:
        Columns rank, variant, mean, std, n_seeds, mean_delta, ci_low, ci_high, p_holm,
        verdict (of the macro delta; NaN for the baseline), train_loss, val_loss, test_loss,
        loss_gap (test_loss - train_loss), losses averaged over the variant's runs.
    """
    macro = scores[(scores["category"] == MACRO) & (scores["metric"] == metric)]
    summary = score_summary(macro).rename(columns={"n": "n_seeds"})
    summary = summary[["variant", "mean", "std", "n_seeds"]]
    macro_deltas = deltas[(deltas["category"] == MACRO) & (deltas["metric"] == metric)]
    shown = ["variant", "mean_delta", "ci_low", "ci_high", "p_holm", "verdict"]
    table = summary.merge(macro_deltas[shown], on="variant", how="left")
    table.loc[table["variant"] == baseline, "mean_delta"] = 0.0
    loss_columns = ["train_loss", "val_loss", "test_loss"]
    mean_losses = losses.groupby("variant", as_index=False)[loss_columns].mean()
    table = table.merge(mean_losses, on="variant", how="left")
    table["loss_gap"] = table["test_loss"] - table["train_loss"]
    table = table.sort_values(["mean", "variant"], ascending=[False, True], ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
