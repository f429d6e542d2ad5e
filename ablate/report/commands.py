"""`ablate summarize STUDY_DIR`: the command-line edge of the summary (nothing imports it)."""

from __future__ import annotations

from ablate.prune.report import pruning_section
from ablate.report.summarize import summarize
from ablate.store import StudyDir


def summarize_command(study_dir: str, metric: str | None = None) -> None:
    """Write STUDY_DIR/summary/: verdicts, delta tables, rankings, plots and report.html,
    with the pruning section when the study has pruning results. `metric` (None: the
    grid's analysis.metric) is the headline metric.

    Reads only the study's files (a local folder or a URI), so a copied or partial study
    summarises; missing, failed and diverged runs are named in the output and the report.

    Raises:
        UserError: unknown metric, not a study, no finished run, or a damaged file.

    Example:
        $ ablate summarize runs/quickstart --metric iou
    """
    summarize(StudyDir.open(study_dir), metric, sections=[pruning_section])
