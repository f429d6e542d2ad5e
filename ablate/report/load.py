"""What a summary reads from a study directory: its tables, stored grid and cleaning report.

Everything comes through the study's `StudyDir` (local folder or URI alike): the Parquet
tables through its result store (validated on read), grid.yaml verbatim, dataset.json
checked. No Ray and no training code, so a copied or partial study summarises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ablate.config import GridConfig, ProtocolConfig, RunConfig
from ablate.errors import UserError
from ablate.grid import expand_variants
from ablate.store import StudyDir, parse_run_config
from ablate.store.parquet import RESULTS, run_file_name
from ablate.store.study import GRID_FILE

RUN_KEYS = ["variant", "seed"]


@dataclass
class Expected:
    """The runs a study should have: from grid.yaml, else from what the store holds."""

    variants: list[str]
    seeds: list[int]
    from_grid: bool

    def pairs(self) -> list[tuple[str, int]]:
        return [(variant, seed) for variant in self.variants for seed in self.seeds]


@dataclass
class StudyResults:
    """Everything the summary reads from one study directory.

    `class_metrics` and `history` hold the rows of runs that finished ok only; `runs` holds
    every finished run (ok, failed, diverged).
    """

    study: StudyDir
    name: str
    runs: pd.DataFrame
    ok_runs: pd.DataFrame
    class_metrics: pd.DataFrame
    history: pd.DataFrame
    expected: Expected
    grid: GridConfig | None = None
    dataset: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def run_config(self, variant: str, seed: int) -> RunConfig | None:
        """The RunConfig stored with a run; None when the run is not in the runs table.

        Raises:
            UserError: the stored config is not valid JSON of a RunConfig.
        """
        rows = self.runs[(self.runs["variant"] == variant) & (self.runs["seed"] == seed)]
        if rows.empty or "config" not in rows:
            return None
        where = self.study.path(RESULTS, "runs", run_file_name(variant, seed))
        return parse_run_config(rows["config"].iloc[0], where)

    def protocol(self) -> ProtocolConfig | None:
        """The grid's protocol, else the first stored run's."""
        if self.grid is not None:
            return self.grid.protocol
        if self.runs.empty:
            return None
        config = self.run_config(*self.runs[RUN_KEYS].iloc[0])
        return config.protocol if config else None

    def early_stopping_splits(self) -> set[str]:
        """The splits early stopping watched, from the runs table, else from the protocol."""
        if "early_stopping_split" in self.runs:
            return {str(s) for s in self.runs["early_stopping_split"].dropna()}
        protocol = self.protocol()
        if protocol is None:
            return set()
        return {"test" if protocol.early_stops_on_test else "val"}


def _variant_names(grid: GridConfig, study: StudyDir) -> list[str]:
    try:
        return [variant.name for variant in expand_variants(grid)]
    except UserError as error:
        where = study.path(GRID_FILE)
        raise UserError(f"{where}: its ablations do not expand: {error}") from None


def _expected(grid: GridConfig | None, variants: list[str] | None, runs: pd.DataFrame) -> Expected:
    """Variants x seeds a study should hold; the store's own variants and seeds are added so
    that a run of an unexpected variant is still checked for its missing seeds."""
    stored_variants = list(dict.fromkeys(runs["variant"]))
    stored_seeds = sorted(int(seed) for seed in set(runs["seed"]))
    if grid is None:
        return Expected(stored_variants, stored_seeds, from_grid=False)
    seeds = list(dict.fromkeys([*grid.protocol.seed_list(), *stored_seeds]))
    names = list(dict.fromkeys([*(variants or []), *stored_variants]))
    return Expected(names, seeds, from_grid=True)


def _study_name(grid: GridConfig | None, runs: pd.DataFrame, study: StudyDir) -> str:
    """The grid's study name, else the one the runs carry, else the folder's."""
    if grid is not None:
        return grid.study
    if "study" in runs and runs["study"].notna().any():
        return str(runs["study"].dropna().iloc[0])
    return study.folder_name


def _of_runs(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of `table` that belong to `runs` (by variant and seed)."""
    if table.empty:
        return table
    return table.merge(runs[RUN_KEYS].drop_duplicates(), on=RUN_KEYS, how="inner")


def load_study(
    study: StudyDir, grid: GridConfig | None = None, variants: list[str] | None = None
) -> StudyResults:
    """Read a study directory for its summary.

    Args:
        study: the study directory.
        grid: its grid when the caller has it (`ablate run`), else grid.yaml is read.
        variants: the grid's variant names when the caller has expanded it already.

    Raises:
        UserError: not a study, no finished run, or a damaged file (named).

    Example:
        >>> results = load_study(StudyDir.open("runs/quickstart"))  # doctest: +SKIP
    """
    study.require_study()
    store = study.results()
    runs = store.read("runs")
    if runs.empty:
        raise UserError(f"{store.table_dir('runs')}: no finished runs yet; run `ablate run` first")
    notes: list[str] = []
    if grid is None:
        grid = study.read_grid()
        if grid is None:
            notes.append("grid.yaml not found: expected runs are taken from the store")
    if grid is not None and variants is None:
        variants = _variant_names(grid, study)
    ok_runs = store.ok_runs()
    return StudyResults(
        study=study,
        name=_study_name(grid, runs, study),
        runs=runs,
        ok_runs=ok_runs,
        class_metrics=_of_runs(store.read("class_metrics"), ok_runs),
        history=_of_runs(store.read("history"), ok_runs),
        expected=_expected(grid, variants, runs),
        grid=grid,
        dataset=study.read_dataset(),
        notes=notes,
    )


@dataclass
class RunStatus:
    """Which expected runs are missing, failed or diverged (variant, seed, detail)."""

    missing: list[tuple[str, int]]
    failed: list[tuple[str, int, str]]
    diverged: list[tuple[str, int, str]]
    ok: int
    expected: int

    def lines(self) -> list[str]:
        """Human-readable lines, one per problem run (empty when all is well)."""
        lines = [f"missing: {variant} seed {seed}" for variant, seed in self.missing]
        for label, rows in (("failed", self.failed), ("diverged", self.diverged)):
            lines += [f"{label}: {v} seed {s}" + (f" ({d})" if d else "") for v, s, d in rows]
        return lines


def run_status(results: StudyResults) -> RunStatus:
    """Compare the runs table with the expected variants x seeds."""
    runs = results.runs
    present = set(zip(runs["variant"], runs["seed"].astype(int), strict=True))
    missing = [pair for pair in results.expected.pairs() if pair not in present]

    def with_status(status: str) -> list[tuple[str, int, str]]:
        rows = runs[runs["status"] == status]
        errors = rows["error"] if "error" in rows else pd.Series(None, index=rows.index)
        return [
            (str(variant), int(seed), "" if pd.isna(error) else str(error))
            for variant, seed, error in zip(rows["variant"], rows["seed"], errors, strict=True)
        ]

    return RunStatus(
        missing=missing,
        failed=with_status("failed"),
        diverged=with_status("diverged"),
        ok=len(results.ok_runs),
        expected=len(results.expected.pairs()),
    )
