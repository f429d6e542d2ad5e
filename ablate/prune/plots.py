"""Figures of the pruning summary; each function returns a matplotlib Figure (Agg backend).

Callers save them as PNG (summary/pruning/) or embed them in report.html.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from ablate.prune.summary import MACRO


def curve_targets(summary: pd.DataFrame, variant: str) -> dict[str, tuple[str, str]]:
    """method -> (scope, target) whose amount-vs-Dice curve a variant's figure shows.

    The whole network (scope `global`) when it was pruned; otherwise the target of the first
    scope pruned whose macro Dice falls most at its largest amount (the most sensitive one).
    """
    rows = summary[(summary["variant"] == variant) & (summary["category"] == MACRO)]
    chosen = {}
    for method, part in rows.groupby("method", sort=False):
        scope = "global" if (part["scope"] == "global").any() else part["scope"].iloc[0]
        part = part[part["scope"] == scope]
        largest = part[part["amount"] == part["amount"].max()]
        target = largest.sort_values("delta_dice_mean", kind="stable")["target"].iloc[0]
        chosen[method] = (scope, target)
    return chosen


def amount_curves(summary: pd.DataFrame, variant: str) -> Figure | None:
    """Amount vs Dice per category (one line each), one panel per method (see curve_targets)."""
    chosen = curve_targets(summary, variant)
    if not chosen:
        return None
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.5 * len(chosen), 3.6), squeeze=False)
    for ax, (method, (scope, target)) in zip(axes[0], chosen.items(), strict=True):
        rows = summary[
            (summary["variant"] == variant)
            & (summary["method"] == method)
            & (summary["scope"] == scope)
            & (summary["target"] == target)
        ]
        for category, curve in rows.groupby("category", sort=False):
            _category_curve(ax, curve.sort_values("amount"), category)
        where = "global" if scope == "global" else f"{target}, most sensitive of {scope}"
        ax.set_title(f"{variant}: {method} ({where})", fontsize=9)
        ax.set_xlabel("amount pruned")
        ax.set_ylabel("Dice")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _category_curve(ax: plt.Axes, curve: pd.DataFrame, category: str) -> None:
    """One category's mean Dice over amounts with a band of one standard deviation."""
    style = {"color": "black", "linewidth": 2.2} if category == MACRO else {}
    ax.plot(curve["amount"], curve["dice_mean"], marker="o", markersize=3, label=category, **style)
    std = curve["dice_std"].fillna(0.0)
    ax.fill_between(curve["amount"], curve["dice_mean"] - std, curve["dice_mean"] + std, alpha=0.15)


def sensitivity_heatmap(
    summary: pd.DataFrame, variant: str, method: str, scope: str
) -> Figure | None:
    """Target x amount heatmap of the macro Dice drop (unpruned minus pruned, mean over seeds)."""
    rows = summary[
        (summary["variant"] == variant)
        & (summary["method"] == method)
        & (summary["scope"] == scope)
        & (summary["category"] == MACRO)
        & (summary["amount"] > 0)
    ]
    if rows.empty:
        return None
    grid = rows.pivot_table(index="target", columns="amount", values="delta_dice_mean", sort=False)
    grid = grid.sort_index(axis=1)  # amounts ascending, targets in network order
    drop = -grid.to_numpy()
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 3.0, 0.32 * grid.shape[0] + 1.6))
    limit = max(float(np.nanmax(np.abs(drop))), 1e-6)
    image = ax.imshow(drop, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"{amount:g}" for amount in grid.columns])
    ax.set_yticks(range(grid.shape[0]), list(grid.index), fontsize=8)
    for (row, col), value in np.ndenumerate(drop):
        if np.isfinite(value):
            ax.text(col, row, f"{value:.3f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("amount pruned")
    ax.set_title(f"{variant}: macro Dice drop, {method}, scope {scope}", fontsize=9)
    fig.colorbar(image, ax=ax, label="Dice drop")
    fig.tight_layout()
    return fig


def layer_bars(
    table: pd.DataFrame, value: str, title: str, hue: str | None = None
) -> Figure | None:
    """Bars of `<value>_mean` per layer with `<value>_std` error bars; `hue` splits the bars."""
    if table.empty:
        return None
    layers = list(dict.fromkeys(table["layer"]))
    hues = list(dict.fromkeys(table[hue])) if hue else [None]
    width = 0.8 / len(hues)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2.0), 3.8))
    positions = np.arange(len(layers))
    for index, level in enumerate(hues):
        part = table if level is None else table[table[hue] == level]
        part = part.set_index("layer").reindex(layers)
        ax.bar(
            positions + index * width - 0.4 + width / 2,
            part[f"{value}_mean"],
            width,
            yerr=part[f"{value}_std"].fillna(0.0),
            label=level,
            capsize=2,
        )
    ax.set_xticks(positions, layers, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel(value.replace("_", " "))
    ax.set_title(title, fontsize=9)
    if hue:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
