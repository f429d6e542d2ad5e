"""PNG figures of the summary, drawn with matplotlib's object API (Agg canvas, no pyplot).

Each function returns a `Figure`; `png_bytes` encodes it. No global matplotlib state is touched, so
figures can be drawn from any thread and never open a window.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ablate.report.design import Design
from ablate.report.inference import BETTER, EQUIVALENT, WORSE
from ablate.report.tables import (
    EQUIVALENT_MARK,
    SIGNIFICANT_MARK,
    category_order,
    percent,
    verdict_mark,
)

DPI = 100


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (for embedding)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def delta_heatmap(deltas: pd.DataFrame, metric: str) -> Figure:
    """Variants x categories (and macro) of the mean delta, diverging colours centred on 0;
    each cell marked with its verdict (* better or worse, ≈ equivalent)."""
    table = deltas[deltas["metric"] == metric]
    values = table.pivot(index="variant", columns="category", values="mean_delta")
    verdict = table.pivot(index="variant", columns="category", values="verdict")
    columns = category_order(list(values.columns))
    variants = list(dict.fromkeys(table["variant"]))
    values, verdict = values.loc[variants, columns], verdict.loc[variants, columns]
    limit = float(np.nanmax(np.abs(values.to_numpy(dtype=float)))) if values.size else 0.0
    limit = limit if math.isfinite(limit) and limit > 0 else 1e-3
    figure = Figure(figsize=(1.2 + 1.1 * len(columns), 1.0 + 0.45 * len(variants)))
    axes = figure.add_subplot()
    image = axes.imshow(
        values.to_numpy(dtype=float),
        cmap="RdBu",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit),
        aspect="auto",
    )
    for row, variant in enumerate(variants):
        for col, category in enumerate(columns):
            value = values.at[variant, category]
            if math.isfinite(value):
                strong = abs(value) > 0.6 * limit
                axes.text(
                    col,
                    row,
                    f"{value:+.3f}{verdict_mark(verdict.at[variant, category])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if strong else "black",
                )
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(variants)), variants)
    axes.set_title(
        f"{metric} delta vs baseline ({SIGNIFICANT_MARK} better/worse, "
        f"{EQUIVALENT_MARK} equivalent)"
    )
    figure.colorbar(image, ax=axes, label=f"delta {metric}")
    return figure


VERDICT_COLOURS = {BETTER: "#2166ac", WORSE: "#b2182b", EQUIVALENT: "#1b7837"}
"""Marker colour per verdict; inconclusive is grey."""
INCONCLUSIVE_COLOUR = "#777777"


def forest_plot(verdicts: pd.DataFrame, metric: str, design: Design) -> Figure:
    """Macro delta per variant with its interval (thin) and its 1 - 2 alpha TOST interval
    (thick), over the shaded ±margin band; markers coloured by verdict.

    Args:
        verdicts: the macro rows of `metric` of the delta table, in display order.
        metric: the metric shown.
        design: the study's design (margin, test).
    """
    rows = verdicts.iloc[::-1]  # first variant on top
    positions = np.arange(len(rows))
    figure = Figure(figsize=(7.0, 1.2 + 0.45 * max(1, len(rows))))
    axes = figure.add_subplot()
    margin = design.margin
    axes.axvspan(-margin, margin, color="#d9f0d3", alpha=0.8, label=f"±margin ({margin:g})")
    axes.axvline(0.0, color="black", linewidth=0.8)
    for y, (_, row) in zip(positions, rows.iterrows(), strict=True):
        colour = VERDICT_COLOURS.get(row["verdict"], INCONCLUSIVE_COLOUR)
        if pd.notna(row["ci_low"]):
            axes.plot([row["ci_low"], row["ci_high"]], [y, y], color=colour, linewidth=1.2)
            axes.plot([row["eq_low"], row["eq_high"]], [y, y], color=colour, linewidth=4.0)
        axes.plot(row["mean_delta"], y, "o", color=colour, markersize=6)
        axes.annotate(
            row["verdict"],
            (1.01, y),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
            color=colour,
        )
    axes.set_yticks(positions, list(rows["variant"]))
    axes.set_ylim(-0.7, len(rows) - 0.3)
    repeated = "" if design.schedule is None else " repeated"
    interval = f"{percent(1.0 - design.alpha)}{repeated} interval"
    tost = "1 - 2 alpha" if design.schedule is None else "1 - 2 alpha of the last look"
    axes.set_xlabel(f"macro {metric} delta vs baseline: {interval} (thin), {tost} (thick)")
    axes.legend(loc="lower right", fontsize=7)
    axes.grid(axis="x", alpha=0.3)
    return figure


def training_curves(history: pd.DataFrame) -> Figure | None:
    """Mean train and validation loss per epoch and variant (mean over seeds); None if empty."""
    if history.empty:
        return None
    figure = Figure(figsize=(10.0, 3.8))
    axes_train, axes_val = figure.subplots(1, 2, sharey=True)
    means = history.groupby(["variant", "epoch"], sort=False)[["train_loss", "val_loss"]].mean()
    for variant in dict.fromkeys(history["variant"]):
        curve = means.loc[variant].sort_index()
        axes_train.plot(curve.index, curve["train_loss"], label=variant, linewidth=1.2)
        axes_val.plot(curve.index, curve["val_loss"], label=variant, linewidth=1.2)
    axes_train.set_title("training loss (mean over seeds)")
    axes_val.set_title("validation loss (mean over seeds)")
    for axes in (axes_train, axes_val):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    axes_train.set_ylabel("loss")
    axes_val.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return figure
