"""Text tables of the summary: the per-metric delta tables and the rankings (Markdown).

Each table is first built as a DataFrame of display strings, so the Markdown files and the
HTML report show the same cells.
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.stats import BASELINE, MACRO, significant

TOP_N = 5


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def delta_cell(row: pd.Series) -> str:
    """`-0.031 ± 0.012 *`: delta, CI half-width, mark when Holm-adjusted p < 0.05."""
    text = f"{row['mean_delta']:+.3f}"
    if math.isfinite(row["ci_high"]) and math.isfinite(row["ci_low"]):
        text += f" ± {(row['ci_high'] - row['ci_low']) / 2:.3f}"
    if significant(row["p_holm"]):
        text += " *"
    return text


def category_order(categories: list[str]) -> list[str]:
    """Categories sorted by name, then `macro` last."""
    return [*sorted({c for c in categories if c != MACRO}), MACRO]


def delta_grid(
    summary: pd.DataFrame, deltas: pd.DataFrame, metric: str, baseline: str = BASELINE
) -> pd.DataFrame:
    """Display table for one metric: baseline row (mean ± sd), then one row per variant.

    Args:
        summary: `score_summary` output (mean, std, n per variant, category, metric).
        deltas: `delta_table` output.
        metric: the metric to show.
    """
    base = summary[(summary["variant"] == baseline) & (summary["metric"] == metric)]
    wanted = deltas[deltas["metric"] == metric]
    columns = category_order(list(base["category"]) + list(wanted["category"]))
    rows = [_baseline_row(base, columns, baseline)]
    for variant, group in wanted.groupby("variant", sort=False):
        cells = dict(zip(group["category"], group.apply(delta_cell, axis=1), strict=True))
        row = {"variant": variant, **{c: cells.get(c, "") for c in columns}}
        row["n"] = str(int(group["n_seeds"].min()))
        rows.append(row)
    return pd.DataFrame(rows, columns=["variant", *columns, "n"])


def _baseline_row(base: pd.DataFrame, columns: list[str], baseline: str) -> dict[str, str]:
    cells = {}
    for _, row in base.iterrows():
        spread = f" ± {row['std']:.3f}" if math.isfinite(row["std"]) else ""
        cells[row["category"]] = f"{row['mean']:.3f}{spread}"
    n = str(int(base["n"].max())) if not base.empty else "0"
    return {"variant": f"{baseline} (mean ± sd)", **{c: cells.get(c, "") for c in columns}, "n": n}


def macro_grid(deltas: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Display table of the macro delta of every metric: variants as rows, metrics as columns."""
    macro = deltas[deltas["category"] == MACRO]
    rows = []
    for variant, group in macro.groupby("variant", sort=False):
        cells = dict(zip(group["metric"], group.apply(delta_cell, axis=1), strict=True))
        rows.append({"variant": variant, **{m: cells.get(m, "") for m in metrics}})
    return pd.DataFrame(rows, columns=["variant", *metrics])


def ranking_display(ranking: pd.DataFrame) -> pd.DataFrame:
    """Ranking rows as display strings."""
    shown = pd.DataFrame({"rank": ranking["rank"].astype(str), "variant": ranking["variant"]})
    shown["macro mean ± sd"] = [
        f"{m:.3f}" + (f" ± {s:.3f}" if math.isfinite(s) else "")
        for m, s in zip(ranking["mean"], ranking["std"], strict=True)
    ]
    shown["delta"] = [
        f"{d:+.3f}" + (" *" if significant(p) else "") if math.isfinite(d) else "n/a"
        for d, p in zip(ranking["mean_delta"], ranking["p_holm"], strict=True)
    ]
    for column in ("train_loss", "val_loss", "test_loss", "loss_gap"):
        shown[column.replace("_", " ")] = [_number(float(v), 4) for v in ranking[column]]
    shown["n"] = ranking["n_seeds"].astype(str)
    return shown


MARKDOWN_ESCAPES = {
    "\\": "\\\\",
    "|": "\\|",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "[": "\\[",
    "]": "\\]",
    "`": "\\`",
}
"""Characters of a cell that Markdown would read as markup: raw HTML (`<svg onload=..>`),
links and images (`[x](..)`), code spans, and the table's own `|`. A category name is a
folder name, so it may hold any of them."""
_MARKDOWN_TABLE = str.maketrans({**MARKDOWN_ESCAPES, "\n": " ", "\r": " "})


def markdown_cell(value: object) -> str:
    """`value` as the text of one Markdown table cell: shown as written, never as markup.

    Example:
        >>> markdown_cell("<svg onload=alert(1)>|x")
        '&lt;svg onload=alert(1)&gt;\\\\|x'
    """
    return str(value).translate(_MARKDOWN_TABLE)


def markdown(table: pd.DataFrame) -> str:
    """A DataFrame of strings as a GitHub Markdown table (every cell through `markdown_cell`)."""
    header = "| " + " | ".join(markdown_cell(c) for c in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = [
        "| " + " | ".join(markdown_cell(v) for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


DELTA_LEGEND = (
    "Cells: mean paired delta vs baseline (variant - baseline, same seed) ± half-width of the "
    "95% t interval over seeds; `*` where the Holm-adjusted paired t-test p < 0.05 (family: "
    "the variants of one category and metric). No interval with fewer than 2 paired seeds. "
    "Scores are recomputed from pixel counts summed over each category's test images; macro "
    "is the mean over categories."
)

LOSS_LEGEND = (
    "Losses are the mean over seeds with each run's kept (best-epoch) weights. `train loss` "
    "is the epoch's mean training loss (augmented batches, training resolution); `val loss` "
    "is the loss on the split early stopping watched (the validation split, or the test "
    "split when the protocol has none); `test loss` is the loss on the test split at the "
    "native mask resolution. `loss gap` = test loss - train loss."
)


TEST_SPLIT_NOTE = (
    "**Early stopping watched the TEST split** (protocol.val_fraction 0, no validation "
    "split): every test score here is optimistic.\n\n"
)


def deltas_markdown(
    study: str, metric: str, grid: pd.DataFrame, stopped_on_test: bool = False
) -> str:
    """Content of `deltas_<metric>.md`."""
    note = TEST_SPLIT_NOTE if stopped_on_test else ""
    return f"# {study}: {metric} deltas vs baseline\n\n{note}{DELTA_LEGEND}\n\n{markdown(grid)}"


def ranking_markdown(
    study: str,
    metric: str,
    ranking: pd.DataFrame,
    top: int = TOP_N,
    stopped_on_test: bool = False,
) -> str:
    """Content of `ranking.md`: the best and worst `top` variants by macro metric."""
    shown = ranking_display(ranking)
    worst = shown.iloc[::-1].head(top)
    note = TEST_SPLIT_NOTE if stopped_on_test else ""
    return (
        f"# {study}: variants ranked by macro {metric}\n\n{note}{LOSS_LEGEND}\n\n"
        f"## Best {min(top, len(shown))}\n\n{markdown(shown.head(top))}\n"
        f"## Worst {min(top, len(shown))}\n\n{markdown(worst)}"
    )
