"""What a summary reads from a study directory: its tables, stored grid and cleaning report.

Everything comes through the study's `StudyDir` (local folder or URI alike): the Parquet
tables through its result store (validated on read), grid.yaml verbatim, dataset.json
checked. No Ray and no training code, so a copied or partial study summarises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ablate.config import AnalysisConfig, GridConfig, ProtocolConfig, RunConfig
from ablate.errors import UserError
from ablate.grid import expand_variants
from ablate.report.design import Design
from ablate.report.rounds import RoundPlan, plan_rounds, round_deltas
from ablate.report.stats import run_scores
from ablate.store import StudyDir, parse_run_config
from ablate.store.parquet import RESULTS, run_file_name
from ablate.store.study import GRID_FILE

RUN_KEYS = ["variant", "seed"]


@dataclass
class Expected:
    """The runs a study should have: from grid.yaml, else from what the store holds.

    With adaptive seeds each variant has its own seeds (`by_variant`): those the replayed
    rounds scheduled for it (`ablate.report.rounds`), plus any it has stored.
    """

    variants: list[str]
    seeds: list[int]
    from_grid: bool
    by_variant: dict[str, list[int]] | None = None

    def pairs(self) -> list[tuple[str, int]]:
        if self.by_variant is not None:
            return [(v, seed) for v in self.variants for seed in self.by_variant.get(v, [])]
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

    def analysis(self) -> AnalysisConfig:
        """The grid's analysis section (the defaults when the study has no grid.yaml)."""
        return self.grid.analysis if self.grid is not None else AnalysisConfig()

    def design(self) -> Design:
        """How this study's deltas are analysed (protocol from the grid or the runs).

        Raises:
            UserError: no protocol is known (no grid.yaml and no readable run config).
        """
        protocol = self.protocol()
        if protocol is None:
            raise UserError(f"{self.study.uri}: no grid.yaml and no run config: unknown protocol")
        return Design.of(protocol, self.analysis(), self.dataset)

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


def _expected(
    grid: GridConfig | None,
    variants: list[str] | None,
    runs: pd.DataFrame,
    rounds: RoundPlan | None = None,
) -> Expected:
    """Variants x seeds a study should hold; the store's own variants and seeds are added so
    that a run of an unexpected variant is still checked for its missing seeds. With
    adaptive seeds (`rounds`), each variant's scheduled seeds plus its stored ones."""
    stored_variants = list(dict.fromkeys(runs["variant"]))
    stored_seeds = sorted(int(seed) for seed in set(runs["seed"]))
    if grid is None:
        return Expected(stored_variants, stored_seeds, from_grid=False)
    names = _study_variants(variants, runs)
    if rounds is not None:
        stored = runs.groupby("variant")["seed"].agg(lambda s: sorted(int(x) for x in s))
        by_variant = {
            name: sorted({*rounds.scheduled.get(name, []), *stored.get(name, [])}) for name in names
        }
        return Expected(names, grid.protocol.max_seed_list(), True, by_variant)
    seeds = list(dict.fromkeys([*grid.protocol.seed_list(), *stored_seeds]))
    return Expected(names, seeds, from_grid=True)


def _study_name(grid: GridConfig | None, runs: pd.DataFrame, study: StudyDir) -> str:
    """The grid's study name, else the one the runs carry, else the folder's."""
    if grid is not None:
        return grid.study
    if "study" in runs and runs["study"].notna().any():
        return str(runs["study"].dropna().iloc[0])
    return study.folder_name


def _study_variants(variants: list[str] | None, runs: pd.DataFrame) -> list[str]:
    """The grid's variants, then any other variant the store holds runs of."""
    return list(dict.fromkeys([*(variants or []), *runs["variant"]]))


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
    class_metrics = _of_runs(store.read("class_metrics"), ok_runs)
    dataset = study.read_dataset()
    rounds = None
    if grid is not None and grid.protocol.is_adaptive:
        design = Design.of(grid.protocol, grid.analysis, dataset)
        rounds = replay_rounds(grid, _study_variants(variants, runs), runs, class_metrics, design)
    return StudyResults(
        study=study,
        name=_study_name(grid, runs, study),
        runs=runs,
        ok_runs=ok_runs,
        class_metrics=class_metrics,
        history=_of_runs(store.read("history"), ok_runs),
        expected=_expected(grid, variants, runs, rounds),
        grid=grid,
        dataset=dataset,
        notes=notes,
    )


def replay_rounds(
    grid: GridConfig,
    variants: list[str],
    runs: pd.DataFrame,
    class_metrics: pd.DataFrame,
    design: Design,
) -> RoundPlan:
    """The adaptive rounds of a study, replayed from its runs table and ok class metrics.

    Args:
        grid: the study's grid (adaptive seeds).
        variants: its variant names, baseline first.
        runs: the runs table (every finished run, any status).
        class_metrics: the class metrics of the ok runs.
        design: `Design.of(grid.protocol, grid.analysis)`.
    """
    finished = (
        set(zip(runs["variant"], runs["seed"].astype(int), strict=True)) if len(runs) else set()
    )
    scores = run_scores(class_metrics) if not class_metrics.empty else pd.DataFrame()
    return plan_rounds(
        variants,
        grid.protocol.max_seed_list(),
        finished,
        round_deltas(scores, design.metric),
        design,
    )


def study_rounds(study: StudyDir, grid: GridConfig, variants: list[str]) -> RoundPlan:
    """Where an adaptive study stands, from its files: what the engine runs next.

    The same reading, scoring and design as the summary (`load_study`), on the current files.
    """
    store = study.results(grid.study)
    runs = store.read("runs")
    ok_runs = store.ok_runs()
    class_metrics = _of_runs(store.read("class_metrics"), ok_runs)
    design = Design.of(grid.protocol, grid.analysis, study.read_dataset())
    return replay_rounds(grid, variants, runs, class_metrics, design)


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
