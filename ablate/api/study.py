"""`ablate.Study`: a study directory read for a notebook, with the summary's own numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablate.config import GridConfig
from ablate.engine.status import StudyStatus, study_status
from ablate.errors import UserError
from ablate.prune.report import pruning_section
from ablate.report import stats
from ablate.report.load import load_study
from ablate.report.summarize import summarize
from ablate.report.summary import Summary, compute_summary
from ablate.store import TABLES, StudyDir


class Study:
    """A study directory (local folder or URI): its tables as pandas DataFrames, the deltas
    and scores its summary holds, its status, and `summarize()`.

    Tables are read from the store on each access, so a study that `ablate run` is still
    producing shows its newest runs. They hold the rows as stored, every finished run
    included: `runs` has one row per run (status ok, failed or diverged, with its error);
    `class_metrics` and `image_metrics` have rows of ok runs only (a failed or diverged run
    stores no metrics); `history` has the epochs of ok and failed runs. `deltas` and `scores`
    use the ok runs only, exactly as the summary files do.

    Example:
        >>> study = Study.open("runs/quickstart")
        >>> study.runs[["variant", "seed", "status"]].head(2)  # doctest: +SKIP
        >>> study.deltas("dice").query("category == 'macro'")  # doctest: +SKIP
    """

    def __init__(self, directory: StudyDir) -> None:
        self.directory = directory
        """The `StudyDir` (paths, stored grid, result store)."""

    @classmethod
    def open(cls, where: str | Path) -> Study:
        """The study at a path or URI (`s3://bucket/runs/x`).

        Raises:
            UserError: no study directory there.
        """
        directory = StudyDir.open(where)
        directory.require_study()
        return cls(directory)

    def __repr__(self) -> str:
        return f"Study({self.directory.uri!r})"

    @property
    def uri(self) -> str:
        return self.directory.uri

    @property
    def name(self) -> str:
        """The study's name: its stored grid's, else its folder's."""
        grid = self.grid
        return grid.study if grid is not None else self.directory.folder_name

    @property
    def grid(self) -> GridConfig | None:
        """The grid the study ran (grid.yaml as stored, resolved), None when absent."""
        return self.directory.read_grid()

    def table(self, name: str) -> pd.DataFrame:
        """Any results table as stored (`runs`, `class_metrics`, `image_metrics`, `history`,
        and after pruning `pruning`, `weight_distance`, `grad_norms`); empty when absent.

        Raises:
            UserError: unknown table, or a damaged file (named).
        """
        if name not in TABLES:
            raise UserError(f"no table {name!r}; tables: {', '.join(TABLES)}")
        return self.directory.results().read(name)

    @property
    def runs(self) -> pd.DataFrame:
        """One row per finished run: status, error, epochs, duration_s, test_loss, device..."""
        return self.table("runs")

    @property
    def class_metrics(self) -> pd.DataFrame:
        """Pixel counts and scores per run and category (ok runs)."""
        return self.table("class_metrics")

    @property
    def image_metrics(self) -> pd.DataFrame:
        """Pixel counts per run and test image (ok runs)."""
        return self.table("image_metrics")

    @property
    def history(self) -> pd.DataFrame:
        """Per run and epoch: train and validation loss, validation scores, learning rate."""
        return self.table("history")

    def deltas(self, metric: str | None = "dice") -> pd.DataFrame:
        """Paired deltas of each variant vs the baseline per category (and `macro`), with
        intervals and p-values: the rows of summary/deltas.parquet for `metric` (every metric
        when None), computed by the summary's own code from the stored runs.

        Raises:
            UserError: unknown metric, or no ok run to compare.
        """
        deltas = self._summary(metric).deltas
        return deltas if metric is None else deltas[deltas["metric"] == metric]

    def scores(self, metric: str | None = "dice") -> pd.DataFrame:
        """Mean, std and number of ok seeds per variant and category: the rows of
        summary/scores.parquet for `metric` (every metric when None).

        Raises:
            UserError: unknown metric, or no ok run.
        """
        scores = self._summary(metric).summary
        return scores if metric is None else scores[scores["metric"] == metric]

    def _summary(self, metric: str | None) -> Summary:
        if metric is not None and metric not in stats.METRICS:
            raise UserError(f"metric {metric!r} is not one of {', '.join(stats.METRICS)}")
        return compute_summary(load_study(self.directory), metric or "dice")

    def summarize(self, metric: str = "dice") -> list[str]:
        """Write summary/: tables, plots and report.html with its pruning section, exactly
        as `ablate summarize`; prints what it found. Returns the paths written.

        Raises:
            UserError: unknown metric, no finished run, or a damaged file.
        """
        return summarize(self.directory, metric, sections=[pruning_section])

    def status(self) -> StudyStatus:
        """Where the study stands (`ablate status`): read-only, also while it runs.
        `print(study.status().format())` shows the table; `.to_dict()` the JSON."""
        return study_status(self.directory)
