"""LaTeX delta tables for papers (`summary/deltas_<metric>.tex`), through pandas' Styler.

The numbers are formatted here as math (`$-0.031 \\pm 0.012$`); everything else, the
table's structure, booktabs rules and the escaping of variant and category names (a
category is a folder name: `_`, `&`, `%`, `<` and friends are possible), is pandas'
`Styler.to_latex`. A table needs `\\usepackage{booktabs}` in the document.
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.design import Design
from ablate.report.inference import BETTER, EQUIVALENT, WORSE
from ablate.report.stats import BASELINE
from ablate.report.tables import category_order, interval_words

BOLD = "boldmath: --wrap;"
"""Styler's LaTeX for a significant cell: `{\\boldmath $...$}` (\\textbf leaves math as is)."""
EQUIVALENT_SUFFIX = "${}^{\\approx}$"


def _angles(label: object) -> str:
    """`<` and `>` as text: pandas' LaTeX escaping (applied first) leaves them, and in
    LaTeX's default font encoding they print as inverted ! and ?."""
    return str(label).replace("<", "\\textless{}").replace(">", "\\textgreater{}")


def _math(mean: float, half_width: float | None, signed: bool) -> str:
    number = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    if half_width is None or not math.isfinite(half_width):
        return f"${number}$"
    return f"${number} \\pm {half_width:.3f}$"


def _delta_cell(row: pd.Series) -> str:
    if pd.isna(row["mean_delta"]):  # no paired seed
        return "--"
    half = (row["ci_high"] - row["ci_low"]) / 2 if pd.notna(row["ci_low"]) else None
    text = _math(float(row["mean_delta"]), half, signed=True)
    return text + EQUIVALENT_SUFFIX if row["verdict"] == EQUIVALENT else text


def _frames(
    summary: pd.DataFrame, deltas: pd.DataFrame, metric: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, styles): baseline mean ± sd, then each variant's deltas; bold where decided
    better or worse."""
    base = summary[(summary["variant"] == BASELINE) & (summary["metric"] == metric)]
    wanted = deltas[deltas["metric"] == metric]
    columns = category_order(list(base["category"]) + list(wanted["category"]))
    variants = [BASELINE, *dict.fromkeys(wanted["variant"])]
    frame = pd.DataFrame("", index=variants, columns=columns, dtype=object)
    style = pd.DataFrame("", index=variants, columns=columns, dtype=object)
    for row in base.itertuples():
        std = float(row.std) if pd.notna(row.std) else None
        frame.at[BASELINE, row.category] = _math(float(row.mean), std, signed=False)
    for _, row in wanted.iterrows():
        frame.at[row["variant"], row["category"]] = _delta_cell(row)
        if row["verdict"] in (BETTER, WORSE):
            style.at[row["variant"], row["category"]] = BOLD
    frame.columns.name = "variant"
    return frame, style


def _caption(metric: str, design: Design) -> str:
    interval = interval_words(design).replace("%", "\\%")
    test = "paired $t$" if design.r == 0 else f"corrected resampled $t$, $r = {design.r:.3g}$"
    return (
        f"Mean paired {metric} delta vs baseline (same seed) $\\pm$ half-width of {interval} "
        f"({test}). Bold: better or worse, Holm-adjusted $p < {design.alpha:g}$; "
        f"{EQUIVALENT_SUFFIX}: equivalent within $\\pm {design.margin:g}$ (TOST). "
        "Baseline row: mean $\\pm$ sd over seeds."
    )


def deltas_latex(summary: pd.DataFrame, deltas: pd.DataFrame, metric: str, design: Design) -> str:
    """Content of `deltas_<metric>.tex`: a booktabs table, variants x categories (and macro).

    Args:
        summary: `stats.score_summary` output (the baseline row's mean and sd).
        deltas: the delta table (`design.delta_table`).
        metric: the metric to show.
        design: the study's design (test, alpha, margin for the caption).

    Example:
        >>> tex = deltas_latex(summary.summary, summary.deltas, "dice", summary.design)
        >>> tex.splitlines()[0]  # doctest: +SKIP
        '% ablate: needs \\\\usepackage{booktabs}'
    """
    frame, style = _frames(summary, deltas, metric)
    styler = (
        frame.style.format_index(_angles, escape="latex", axis=0)
        .format_index(_angles, escape="latex", axis=1)
        .apply(lambda _: style, axis=None)
    )
    table = styler.to_latex(
        hrules=True,
        caption=_caption(metric, design),
        label=f"tab:deltas-{metric}",
        position_float="centering",
        column_format="l" + "r" * len(frame.columns),
    )
    return f"% ablate: needs \\usepackage{{booktabs}}\n{table}"
