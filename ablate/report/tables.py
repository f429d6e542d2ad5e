"""Text tables of the summary: delta tables, verdicts and rankings (Markdown).

Each table is first built as a DataFrame of display strings, so the Markdown files and the
HTML report show the same cells.
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.report.design import Design
from ablate.report.inference import BETTER, EQUIVALENT, INCONCLUSIVE, WORSE
from ablate.report.stats import BASELINE, MACRO

TOP_N = 5
SIGNIFICANT_MARK = "*"
EQUIVALENT_MARK = "≈"
MARKS = {BETTER: SIGNIFICANT_MARK, WORSE: SIGNIFICANT_MARK, EQUIVALENT: EQUIVALENT_MARK}
"""Verdict -> mark after a delta; inconclusive has none."""


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def verdict_mark(verdict: object) -> str:
    """`*` for better or worse, `≈` for equivalent, "" otherwise (NaN: the baseline)."""
    return MARKS.get(verdict, "") if isinstance(verdict, str) else ""


def percent(level: float) -> str:
    """0.95 -> '95%', 0.9717 -> '97.2%'."""
    return f"{100 * level:.3g}%"


def _finite(row: pd.Series, *columns: str) -> bool:
    return all(pd.notna(row[c]) and math.isfinite(float(row[c])) for c in columns)


def delta_cell(row: pd.Series) -> str:
    """`-0.031 ± 0.012 *`: delta, half-width of its interval, the verdict's mark; 'n/a'
    without a paired seed."""
    if not _finite(row, "mean_delta"):
        return "n/a"
    text = f"{row['mean_delta']:+.3f}"
    if _finite(row, "ci_low", "ci_high"):
        text += f" ± {(row['ci_high'] - row['ci_low']) / 2:.3f}"
    mark = verdict_mark(row["verdict"])
    return f"{text} {mark}" if mark else text


def category_order(categories: list[str]) -> list[str]:
    """Categories sorted by name, then `macro` last."""
    return [*sorted({c for c in categories if c != MACRO}), MACRO]


def delta_grid(
    summary: pd.DataFrame, deltas: pd.DataFrame, metric: str, baseline: str = BASELINE
) -> pd.DataFrame:
    """Display table for one metric: baseline row (mean ± sd), then one row per variant.

    Args:
        summary: `score_summary` output (mean, std, n per variant, category, metric).
        deltas: the delta table (`design.delta_table`).
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
    return pd.DataFrame(rows, columns=["variant", *columns, "n"]).fillna("")


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
        (f"{d:+.3f} {verdict_mark(v)}".rstrip() if math.isfinite(d) else "n/a")
        for d, v in zip(ranking["mean_delta"], ranking["verdict"], strict=True)
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


def interval_words(design: Design) -> str:
    """'the 95% interval', or in an adaptive design 'the 95% repeated confidence interval'."""
    level = percent(1.0 - design.alpha)
    if design.schedule is None:
        return f"the {level} interval"
    return (
        f"the {level} repeated confidence interval (adaptive seeds: it holds whichever round "
        "stopped the variant)"
    )


def test_words(design: Design) -> str:
    """Which test gave the intervals and p-values, and why."""
    if design.r == 0:
        return "paired t-test (the split is the same for every seed: protocol.vary.split false)"
    return (
        f"corrected resampled t-test (Nadeau-Bengio, r = n_test/n_train = {design.r:.3g}: "
        "each seed redraws the split)"
    )


def marks_legend(design: Design) -> str:
    """What the marks after a delta mean."""
    tost = "1 - 2 alpha" if design.schedule is None else "1 - 2 alpha_J (of the last look)"
    return (
        f"`{SIGNIFICANT_MARK}` better or worse: Holm-adjusted p < {design.alpha:g} (family: the "
        f"variants of one category and metric; each family is adjusted on its own, so the "
        f"categories and metrics other than the headline one are exploratory); "
        f"`{EQUIVALENT_MARK}` equivalent: the {tost} interval (TOST) lies inside "
        f"±{design.margin:g}, a per-comparison claim; no mark: inconclusive (verdicts.md, "
        "deltas.csv: seeds_needed)."
    )


def delta_caption(metric: str | None, design: Design) -> str:
    """The caption of a delta table: cells, test, interval level, marks.

    Args:
        metric: the table's metric; None for a table of several metrics.
        design: the study's design.
    """
    what = "delta" if metric is None else f"{metric} delta"
    return (
        f"Cells: mean paired {what} vs baseline (variant - baseline, same seed) ± "
        f"half-width of {interval_words(design)}, {test_words(design)}. "
        f"{marks_legend(design)} No interval with fewer than 2 paired seeds or deltas that did "
        "not vary. Scores are recomputed from pixel counts summed over each category's test "
        "images; macro is the mean over categories."
    )


LOSS_LEGEND = (
    f"`delta` is the macro delta vs baseline with its verdict's mark (`{SIGNIFICANT_MARK}` "
    f"better or worse, `{EQUIVALENT_MARK}` equivalent; see verdicts.md). "
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
    study: str, metric: str, grid: pd.DataFrame, caption: str, stopped_on_test: bool = False
) -> str:
    """Content of `deltas_<metric>.md`: title, caption (`delta_caption`), table."""
    note = TEST_SPLIT_NOTE if stopped_on_test else ""
    return f"# {study}: {metric} deltas vs baseline\n\n{note}{caption}\n\n{markdown(grid)}"


def design_words(design: Design) -> str:
    """'margin ±0.01, alpha 0.05, corrected resampled t-test (...), adaptive seeds 3..8'."""
    seeds = ""
    if design.schedule is not None:
        seeds = f"; adaptive seeds {design.schedule.min_seeds}..{design.schedule.max_seeds}"
    return f"margin ±{design.margin:g}, alpha {design.alpha:g}, {test_words(design)}{seeds}"


def _seeds_needed_cell(row: pd.Series) -> str:
    """seeds_needed as shown: a number, 'never', 'more than N', 'n/a', or '-' when decided."""
    if row["verdict"] != INCONCLUSIVE:
        return "-"
    if pd.notna(row["seeds_needed"]):
        return str(int(row["seeds_needed"]))
    reason = str(row["seeds_reason"])
    if reason.startswith("never"):
        return "never"
    return reason if reason.startswith("more than") else "n/a"


def _interval_cell(row: pd.Series) -> str:
    if not _finite(row, "mean_delta"):
        return "n/a (no paired seed)"
    text = f"{row['mean_delta']:+.4f}"
    if _finite(row, "ci_low", "ci_high"):
        return f"{text} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    return f"{text} (no interval)"


def verdict_display(verdicts: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per variant: verdict, macro delta with its interval, level, seeds used and
    needed, why (the verdict's reason, and for inconclusive rows what more seeds would do)."""
    rows = []
    for _, row in verdicts.iterrows():
        why, more = str(row["reason"]), str(row["seeds_reason"])
        if row["verdict"] == INCONCLUSIVE and more and more not in why:
            why += f"; seeds needed: {more}"
        rows.append(
            {
                "variant": row["variant"],
                "verdict": row["verdict"],
                f"macro {metric} delta [interval]": _interval_cell(row),
                "level": percent(row["ci_level"]) if _finite(row, "ci_low") else "",
                "seeds used": str(int(row["n_seeds"])),
                "seeds needed": _seeds_needed_cell(row),
                "why": why,
            }
        )
    columns = ["variant", "verdict", f"macro {metric} delta [interval]", "level"]
    return pd.DataFrame(rows, columns=[*columns, "seeds used", "seeds needed", "why"])


VERDICT_LEGEND = (
    "Verdicts: `equivalent` when the 1 - 2 alpha interval lies inside ±margin (removing or "
    "swapping the component changes the metric by less than the margin); else `better` / "
    "`worse` when the Holm-adjusted p < alpha, by the sign of the delta; else `inconclusive`, "
    "with the paired seeds that would decide it at 80% power (`never` when the split-to-split "
    "variance floor stops any number of seeds; the reason says what to do)."
)


def verdicts_markdown(study: str, verdicts: pd.DataFrame, metric: str, design: Design) -> str:
    """Content of `verdicts.md`: one verdict per variant on the macro headline metric."""
    head = f"# {study}: verdicts on macro {metric}\n\n{design_words(design)}.\n\n{VERDICT_LEGEND}"
    if verdicts.empty:
        return f"{head}\n\nNo paired baseline runs: no verdicts.\n"
    return f"{head}\n\n{markdown(verdict_display(verdicts, metric))}"


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
