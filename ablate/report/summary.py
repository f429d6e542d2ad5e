"""The numbers of a summary, computed from a loaded study, and its table files."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from ablate.errors import UserError
from ablate.report import latex, stats, tables
from ablate.report.design import Design, delta_table
from ablate.report.load import StudyResults


@dataclass
class Summary:
    """Every table the summary writes, for one headline metric."""

    metric: str
    design: Design
    scores: pd.DataFrame  # per run: variant, seed, category, metric, value
    summary: pd.DataFrame  # per variant, category, metric: mean, std, n
    deltas: pd.DataFrame  # inference.TABLE_COLUMNS
    ranking: pd.DataFrame  # stats.ranking output for `metric`
    has_baseline: bool

    @property
    def verdicts(self) -> pd.DataFrame:
        """The macro rows of the headline metric: one verdict per variant."""
        deltas = self.deltas
        return deltas[(deltas["category"] == stats.MACRO) & (deltas["metric"] == self.metric)]


def _in_study_order(scores: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Rows in the grid's variant order (baseline first), then by seed and category."""
    order = {name: index for index, name in enumerate(variants)}
    rank = scores["variant"].map(order).fillna(len(order))
    keys = scores.assign(_rank=rank).sort_values(["_rank", "variant", "seed", "category"])
    return keys.drop(columns="_rank").reset_index(drop=True)


def compute_summary(results: StudyResults, metric: str) -> Summary:
    """Scores, seed summaries, paired deltas and the ranking of a study.

    Raises:
        UserError: no ok run has class metrics.
    """
    if results.class_metrics.empty:
        raise UserError(
            f"{results.study.path('results')}: no run finished with status ok and "
            "class_metrics; nothing to summarise"
        )
    design = results.design()
    scores = _in_study_order(stats.run_scores(results.class_metrics), results.expected.variants)
    try:
        deltas = delta_table(scores, design, results.expected.variants)
    except ValueError as error:  # more seeds stored than the grid's adaptive max
        raise UserError(f"{results.study.uri}: cannot analyse the study: {error}") from None
    losses = stats.losses_at_best_epoch(results.history, results.ok_runs)
    return Summary(
        metric=metric,
        design=design,
        scores=scores,
        summary=stats.score_summary(scores),
        deltas=deltas,
        ranking=stats.ranking(scores, deltas, losses, metric),
        has_baseline=bool((scores["variant"] == stats.BASELINE).any()),
    )


def _frame_files(frame: pd.DataFrame, stem: str) -> dict[str, bytes]:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return {
        f"{stem}.parquet": buffer.getvalue(),
        f"{stem}.csv": frame.to_csv(index=False).encode("utf-8"),
    }


def table_files(results: StudyResults, summary: Summary) -> dict[str, bytes]:
    """deltas.{parquet,csv}, scores.{parquet,csv}, deltas_<metric>.{md,tex}, verdicts.md,
    ranking.{md,csv}."""
    files = {**_frame_files(summary.deltas, "deltas"), **_frame_files(summary.summary, "scores")}
    on_test = "test" in results.early_stopping_splits()
    design = summary.design
    for metric in stats.METRICS:
        grid = tables.delta_grid(summary.summary, summary.deltas, metric)
        caption = tables.delta_caption(metric, design)
        markdown = tables.deltas_markdown(results.name, metric, grid, caption, on_test)
        files[f"deltas_{metric}.md"] = markdown.encode("utf-8")
        tex = latex.deltas_latex(summary.summary, summary.deltas, metric, design)
        files[f"deltas_{metric}.tex"] = tex.encode("utf-8")
    verdicts = tables.verdicts_markdown(results.name, summary.verdicts, summary.metric, design)
    files["verdicts.md"] = verdicts.encode("utf-8")
    files["ranking.csv"] = summary.ranking.to_csv(index=False).encode("utf-8")
    ranking = tables.ranking_markdown(
        results.name, summary.metric, summary.ranking, stopped_on_test=on_test
    )
    files["ranking.md"] = ranking.encode("utf-8")
    return files
