"""The numbers of a summary, computed from a loaded study, and its table files."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from ablate.errors import UserError
from ablate.report import stats, tables
from ablate.report.load import StudyResults


@dataclass
class Summary:
    """Every table the summary writes, for one headline metric."""

    metric: str
    scores: pd.DataFrame  # per run: variant, seed, category, metric, value
    summary: pd.DataFrame  # per variant, category, metric: mean, std, n
    deltas: pd.DataFrame  # stats.DELTA_COLUMNS
    ranking: pd.DataFrame  # stats.ranking output for `metric`
    has_baseline: bool


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
    scores = _in_study_order(stats.run_scores(results.class_metrics), results.expected.variants)
    deltas = stats.delta_table(scores)
    losses = stats.losses_at_best_epoch(results.history, results.ok_runs)
    return Summary(
        metric=metric,
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
    """deltas.{parquet,csv}, scores.{parquet,csv}, deltas_<metric>.md, ranking.{md,csv}."""
    files = {**_frame_files(summary.deltas, "deltas"), **_frame_files(summary.summary, "scores")}
    on_test = "test" in results.early_stopping_splits()
    for metric in stats.METRICS:
        grid = tables.delta_grid(summary.summary, summary.deltas, metric)
        markdown = tables.deltas_markdown(results.name, metric, grid, on_test)
        files[f"deltas_{metric}.md"] = markdown.encode("utf-8")
    files["ranking.csv"] = summary.ranking.to_csv(index=False).encode("utf-8")
    ranking = tables.ranking_markdown(
        results.name, summary.metric, summary.ranking, stopped_on_test=on_test
    )
    files["ranking.md"] = ranking.encode("utf-8")
    return files
