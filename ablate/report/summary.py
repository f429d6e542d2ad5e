"""The numbers of a summary, computed from a loaded study and written as tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ablate.errors import UserError
from ablate.report import stats, tables
from ablate.report.load import Study


@dataclass
class Summary:
    """Every table the summary writes, for one headline metric."""

    metric: str
    scores: pd.DataFrame  # per run: variant, seed, category, metric, value
    summary: pd.DataFrame  # per variant, category, metric: mean, std, n
    deltas: pd.DataFrame  # stats.DELTA_COLUMNS
    ranking: pd.DataFrame  # stats.ranking output for `metric`
    has_baseline: bool


def ok_class_metrics(study: Study) -> pd.DataFrame:
    """class_metrics rows of runs whose status is ok (failed and diverged runs are left out)."""
    ok = study.ok_runs()[["variant", "seed"]].drop_duplicates()
    if study.class_metrics.empty or ok.empty:
        return pd.DataFrame()
    return study.class_metrics.merge(ok, on=["variant", "seed"], how="inner")


def _in_study_order(scores: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Rows in the grid's variant order (baseline first), then by seed and category."""
    order = {name: index for index, name in enumerate(variants)}
    rank = scores["variant"].map(order).fillna(len(order))
    keys = scores.assign(_rank=rank).sort_values(["_rank", "variant", "seed", "category"])
    return keys.drop(columns="_rank").reset_index(drop=True)


def compute_summary(study: Study, metric: str) -> Summary:
    """Scores, seed summaries, paired deltas and the ranking of a study.

    Raises:
        UserError: no ok run has class metrics.
    """
    counts = ok_class_metrics(study)
    if counts.empty:
        raise UserError(
            f"{study.path / 'results'}: no run finished with status ok and class_metrics; "
            "nothing to summarise"
        )
    scores = _in_study_order(stats.run_scores(counts), study.expected.variants)
    deltas = stats.delta_table(scores)
    ok_runs = study.ok_runs()
    ok_history = (
        study.history.merge(ok_runs[["variant", "seed"]], on=["variant", "seed"])
        if not study.history.empty
        else study.history
    )
    losses = stats.losses_at_best_epoch(ok_history, ok_runs)
    return Summary(
        metric=metric,
        scores=scores,
        summary=stats.score_summary(scores),
        deltas=deltas,
        ranking=stats.ranking(scores, deltas, losses, metric),
        has_baseline=bool((scores["variant"] == stats.BASELINE).any()),
    )


def _frame_files(frame: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    frame.to_parquet(out / f"{stem}.parquet", index=False)
    frame.to_csv(out / f"{stem}.csv", index=False)
    return [out / f"{stem}.parquet", out / f"{stem}.csv"]


def write_tables(study: Study, summary: Summary, out: Path) -> list[Path]:
    """deltas.{parquet,csv}, scores.{parquet,csv}, deltas_<metric>.md, ranking.{md,csv}."""
    written = _frame_files(summary.deltas, out, "deltas")
    written += _frame_files(summary.summary, out, "scores")
    on_test = "test" in study.early_stopping_splits()
    for metric in stats.METRICS:
        grid = tables.delta_grid(summary.summary, summary.deltas, metric)
        path = out / f"deltas_{metric}.md"
        path.write_text(tables.deltas_markdown(study.name, metric, grid, on_test))
        written.append(path)
    summary.ranking.to_csv(out / "ranking.csv", index=False)
    (out / "ranking.md").write_text(
        tables.ranking_markdown(
            study.name, summary.metric, summary.ranking, stopped_on_test=on_test
        )
    )
    return [*written, out / "ranking.csv", out / "ranking.md"]
