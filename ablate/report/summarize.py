"""Writing a study's summary: tables, plots and report.html, replaced as one step."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from ablate.config import GridConfig
from ablate.errors import UserError
from ablate.report import plots, stats
from ablate.report.load import StudyResults, load_study, run_status
from ablate.report.page import Figures, build_report
from ablate.report.predictions import sample_predictions
from ablate.report.sections import ReportSection, SectionBuilder
from ablate.report.summary import Summary, compute_summary, table_files
from ablate.store import StudyDir
from ablate.store.study import REPORT


def _draw(figure: Figure | None, name: str, files: dict[str, bytes]) -> bytes | None:
    """Encode the figure as PNG, keep it as summary file `name`; None when not drawn."""
    if figure is None:
        return None
    files[name] = plots.png_bytes(figure)
    return files[name]


def draw_figures(results: StudyResults, summary: Summary, files: dict[str, bytes]) -> Figures:
    """Every plot of the summary, added to `files` (samples skipped with a note)."""
    metric = summary.metric
    figures = Figures(notes=[])
    if not summary.deltas.empty:
        heatmap = plots.delta_heatmap(summary.deltas, metric)
        figures.heatmap = _draw(heatmap, f"delta_heatmap_{metric}.png", files)
        forest = plots.forest_plot(summary.verdicts, metric, summary.design)
        figures.forest = _draw(forest, f"forest_{metric}.png", files)
    else:
        figures.notes.append("delta plots skipped: no paired baseline runs")
    curves = plots.training_curves(results.history)
    figures.curves = _draw(curves, "training_curves.png", files)
    if figures.curves is None:
        figures.notes.append("training curves skipped: no history of ok runs")
    samples, note = sample_predictions(results, summary.deltas, metric)
    figures.samples = _draw(samples, "sample_predictions.png", files)
    figures.notes.append(note)
    return figures


def summarize(
    study: StudyDir,
    metric: str | None = None,
    sections: Sequence[SectionBuilder] = (),
    grid: GridConfig | None = None,
    variants: list[str] | None = None,
) -> list[str]:
    """Write STUDY_DIR/summary/: verdicts, delta tables (Markdown, LaTeX), rankings, plots,
    report.html (and the files of `sections`), every file replaced in one step. Prints what
    it found and wrote.

    Args:
        study: the study directory.
        metric: headline metric of the verdicts, plots and ranking (None: the grid's
            analysis.metric, dice by default); every metric gets its own delta tables.
        sections: builders of extra report sections (pruning).
        grid, variants: the study's grid and variant names when the caller has them.

    Returns:
        The paths written.

    Raises:
        UserError: unknown metric, not a study, no finished run, or a damaged file.
    """
    if metric is not None and metric not in stats.METRICS:
        raise UserError(f"--metric {metric!r} is not one of {', '.join(stats.METRICS)}")
    results = load_study(study, grid, variants)
    status = run_status(results)
    summary = compute_summary(results, metric or results.analysis().metric)
    files = table_files(results, summary)
    figures = draw_figures(results, summary, files)
    extra: list[ReportSection] = [s for s in (build(study) for build in sections) if s]
    for section in extra:
        files.update(section.files)
    files[REPORT] = build_report(results, status, summary, figures, extra).encode("utf-8")
    written = study.write_summary(files)
    lines = [*status.lines(), *(figures.notes or [])]
    lines += [line for section in extra for line in section.lines]
    _print_outcome(lines, len(written), study)
    return written


def _print_outcome(lines: list[str], count: int, study: StudyDir) -> None:
    for line in lines:
        print(line)
    print(f"wrote {count} files to {study.summary_path()}; open {study.summary_path(REPORT)}")
