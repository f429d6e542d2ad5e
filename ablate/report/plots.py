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

from ablate.report.stats import MACRO, significant
from ablate.report.tables import category_order

DPI = 100


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (for embedding)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def delta_heatmap(deltas: pd.DataFrame, metric: str) -> Figure:
    """Variants x categories (and macro) of the mean delta, diverging colours centred on 0."""
    table = deltas[deltas["metric"] == metric]
    values = table.pivot(index="variant", columns="category", values="mean_delta")
    holm = table.pivot(index="variant", columns="category", values="p_holm")
    columns = category_order(list(values.columns))
    variants = list(dict.fromkeys(table["variant"]))
    values, holm = values.loc[variants, columns], holm.loc[variants, columns]
    limit = float(np.nanmax(np.abs(values.to_numpy()))) if values.size else 0.0
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
                mark = "*" if significant(holm.at[variant, category]) else ""
                strong = abs(value) > 0.6 * limit
                axes.text(
                    col,
                    row,
                    f"{value:+.3f}{mark}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if strong else "black",
                )
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(variants)), variants)
    axes.set_title(f"{metric} delta vs baseline (* Holm p < 0.05)")
    figure.colorbar(image, ax=axes, label=f"delta {metric}")
    return figure


def macro_bars(deltas: pd.DataFrame, metric: str) -> Figure:
    """Macro delta per variant as horizontal bars with their 95% intervals."""
    table = deltas[(deltas["metric"] == metric) & (deltas["category"] == MACRO)]
    table = table.sort_values("mean_delta")
    mean = table["mean_delta"].to_numpy(dtype=float)
    lower = np.nan_to_num(mean - table["ci_low"].to_numpy(dtype=float), nan=0.0)
    upper = np.nan_to_num(table["ci_high"].to_numpy(dtype=float) - mean, nan=0.0)
    figure = Figure(figsize=(6.0, 1.0 + 0.4 * max(1, len(table))))
    axes = figure.add_subplot()
    colours = ["#b2182b" if value < 0 else "#2166ac" for value in mean]
    positions = np.arange(len(table))
    axes.barh(positions, mean, xerr=np.vstack([lower, upper]), color=colours, capsize=3)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_yticks(positions, list(table["variant"]))
    axes.set_xlabel(f"macro {metric} delta vs baseline (95% CI over seeds)")
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
