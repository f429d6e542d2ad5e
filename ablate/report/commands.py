"""`ablate summarize`: read a study's store, write tables, plots and report.html."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ablate.errors import UserError
from ablate.report import plots, stats
from ablate.report.load import Study, load_study, run_status
from ablate.report.page import Figures, build_report
from ablate.report.predictions import sample_predictions
from ablate.report.remote import local_study
from ablate.report.summary import Summary, compute_summary, write_tables


def _draw(figure: Figure | None, path: Path, written: list[Path]) -> bytes | None:
    """Save the figure as PNG under `path` and return its bytes for embedding."""
    if figure is None:
        return None
    written.append(plots.save(figure, path))
    return path.read_bytes()


def draw_figures(study: Study, summary: Summary, out: Path, written: list[Path]) -> Figures:
    """Every plot of the summary, saved under `out` (samples skipped with a note)."""
    metric = summary.metric
    figures = Figures(notes=[])
    if not summary.deltas.empty:
        figures.heatmap = _draw(
            plots.delta_heatmap(summary.deltas, metric),
            out / f"delta_heatmap_{metric}.png",
            written,
        )
        figures.bars = _draw(
            plots.macro_bars(summary.deltas, metric), out / f"macro_delta_{metric}.png", written
        )
    else:
        figures.notes.append("delta plots skipped: no paired baseline runs")
    ok_history = study.history
    if not ok_history.empty:
        ok_history = ok_history.merge(study.ok_runs()[["variant", "seed"]], on=["variant", "seed"])
    figures.curves = _draw(plots.training_curves(ok_history), out / "training_curves.png", written)
    if figures.curves is None:
        figures.notes.append("training curves skipped: no history of ok runs")
    samples, note = sample_predictions(study, summary.deltas, metric)
    figures.samples = _draw(samples, out / "sample_predictions.png", written)
    figures.notes.append(note)
    return figures


def summarize_command(study_dir: str, metric: str = "dice") -> None:
    """Write STUDY_DIR/summary/: delta tables, rankings, plots and report.html.

    Reads only the study's files, so a copied or partial study summarises; missing, failed
    and diverged runs are named in the output and the report.

    Args:
        study_dir: the study directory (holds results/, grid.yaml, dataset.json).
        metric: headline metric of the plots and ranking (dice, iou, precision, recall,
            accuracy); every metric gets its own Markdown delta table.

    Raises:
        UserError: unknown metric, missing directory, or no finished run.

    Example:
        >>> summarize_command("runs/quickstart", metric="iou")  # doctest: +SKIP
    """
    if metric not in stats.METRICS:
        raise UserError(f"--metric {metric!r} is not one of {', '.join(stats.METRICS)}")
    with local_study(study_dir) as folder:
        _summarize(load_study(folder), metric)


def _summarize(study: Study, metric: str) -> None:
    status = run_status(study)
    summary = compute_summary(study, metric)
    out = study.path / "summary"
    out.mkdir(exist_ok=True)
    written = write_tables(study, summary, out)
    figures = draw_figures(study, summary, out, written)
    report = out / "report.html"
    report.write_text(build_report(study, status, summary, figures), encoding="utf-8")
    _print_outcome(status.lines(), figures.notes or [], [*written, report], out)


def _print_outcome(problems: list[str], notes: list[str], written: list[Path], out: Path) -> None:
    for line in problems:
        print(line)
    for note in notes:
        print(note)
    print(f"wrote {len(written)} files to {out}; open {out / 'report.html'}")
