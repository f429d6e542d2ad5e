"""Pruning tables -> per-category deltas against the unpruned model, averaged over seeds.

The pruning table holds one unpruned row set per run (method `none`, target `unpruned`,
amount 0) beside the pruned ones; a delta is always taken against the same run's unpruned
model (same seed, same split), then averaged over seeds.
"""

from __future__ import annotations

import pandas as pd

UNPRUNED_METHOD = "none"
UNPRUNED_SCOPE = "none"
UNPRUNED_TARGET = "unpruned"
MACRO = "macro"
STEP = ["method", "scope", "target", "amount"]
RUN = ["variant", "seed"]


def with_macro(table: pd.DataFrame) -> pd.DataFrame:
    """`table` plus one `macro` row per run and pruning step: the mean over categories."""
    keys = [*RUN, *STEP]
    per_step = table.groupby(keys, sort=False, dropna=False)
    macro = per_step[["dice", "iou"]].mean()
    macro["sparsity"] = per_step["sparsity"].first()
    macro = macro.reset_index()
    macro["category"] = MACRO
    return pd.concat([table, macro], ignore_index=True)


def deltas(table: pd.DataFrame) -> pd.DataFrame:
    """Pruned rows (macro rows included) with `delta_dice` / `delta_iou` against their unpruned run.

    Negative deltas mean the pruned model is worse.
    """
    scored = with_macro(table)
    unpruned = scored[scored["method"] == UNPRUNED_METHOD]
    reference = unpruned[[*RUN, "category", "dice", "iou"]].rename(
        columns={"dice": "dice_unpruned", "iou": "iou_unpruned"}
    )
    pruned = scored[scored["method"] != UNPRUNED_METHOD]
    out = pruned.merge(reference, on=[*RUN, "category"], how="left")
    out["delta_dice"] = out["dice"] - out["dice_unpruned"]
    out["delta_iou"] = out["iou"] - out["iou_unpruned"]
    return out


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of Dice, IoU, their deltas and the sparsity reached.

    Returns one row per (variant, method, scope, target, amount, category) with columns
    `<score>_mean`, `<score>_std` and `seeds`; the unpruned reference appears as amount 0
    rows of every (method, scope, target) so curves start at the unpruned model.
    """
    pruned = deltas(table)
    unpruned = _unpruned_as_amount_zero(table, pruned)
    rows = pd.concat([pruned, unpruned], ignore_index=True)
    keys = ["variant", *STEP, "category"]
    scores = ["dice", "iou", "delta_dice", "delta_iou", "sparsity"]
    grouped = rows.groupby(keys, sort=False)
    out = grouped[scores].agg(["mean", "std"])
    out.columns = [f"{score}_{stat}" for score, stat in out.columns]
    out["seeds"] = grouped["seed"].nunique()
    # Rows keep the network's order (encoder first), which the heatmaps and tables show.
    return out.reset_index()


def _unpruned_as_amount_zero(table: pd.DataFrame, pruned: pd.DataFrame) -> pd.DataFrame:
    """The unpruned rows, copied under each (method, scope, target) with amount 0 and delta 0."""
    steps = pruned[["variant", "method", "scope", "target"]].drop_duplicates()
    if steps.empty:
        return pd.DataFrame()
    reference = with_macro(table)
    reference = reference[reference["method"] == UNPRUNED_METHOD].drop(columns=[*STEP, "sparsity"])
    zero = steps.merge(reference, on="variant")
    zero["amount"] = 0.0
    zero["delta_dice"] = 0.0
    zero["delta_iou"] = 0.0
    zero["sparsity"] = float("nan")  # the sparsity of an untouched target is not a pruning result
    # An explicit amount 0 in the grid already gives a measured row; keep that one.
    measured = pruned[pruned["amount"] == 0.0][["variant", "method", "scope", "target"]]
    if not measured.empty:
        key = ["variant", "method", "scope", "target"]
        zero = zero.merge(measured.drop_duplicates(), on=key, how="left", indicator=True)
        zero = zero[zero["_merge"] == "left_only"].drop(columns="_merge")
    return zero


def worst_targets(summary: pd.DataFrame, count: int = 10) -> pd.DataFrame:
    """The (variant, method, scope, target, amount) steps with the largest macro Dice drop."""
    macro = summary[(summary["category"] == MACRO) & (summary["amount"] > 0)]
    columns = [
        "variant",
        *STEP,
        "dice_mean",
        "delta_dice_mean",
        "delta_dice_std",
        "sparsity_mean",
        "seeds",
    ]
    return (
        macro.sort_values("delta_dice_mean", kind="stable")
        .head(count)[columns]
        .reset_index(drop=True)
    )


def layer_summary(
    table: pd.DataFrame, values: list[str], extra: list[str] | None = None
) -> pd.DataFrame:
    """Mean and std over seeds of each of `values` per (variant, layer[, extra...]), in layer
    order: columns `<value>_mean`, `<value>_std` and `seeds`."""
    keys = ["variant", *(extra or []), "layer"]
    grouped = table.groupby(keys, sort=False)
    out = grouped[values].agg(["mean", "std"])
    out.columns = [f"{value}_{stat}" for value, stat in out.columns]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()
