"""Reading a study directory: the Parquet store, the resolved grid and the cleaning report.

Only files are read (no Ray, no training code), so a copied or partial study summarises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ablate.config import GridConfig, ProtocolConfig, RunConfig
from ablate.errors import UserError

TABLES = ("runs", "class_metrics", "image_metrics", "history")


def _is_complete_file(path: Path) -> bool:
    """Finished Parquet files only: the store writes to hidden or `tmp` names, then renames."""
    name = path.name
    return path.is_file() and not name.startswith((".", "_")) and "tmp" not in name.lower()


def read_table(study_dir: Path, table: str) -> pd.DataFrame:
    """Every finished Parquet file of `results/<table>/`, concatenated (empty if none)."""
    folder = study_dir / "results" / table
    files = sorted(p for p in folder.glob("*.parquet") if _is_complete_file(p))
    frames = [pd.read_parquet(path) for path in files]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


@dataclass
class Expected:
    """The runs a study should have: from grid.yaml, else from what the store holds."""

    variants: list[str]
    seeds: list[int]
    from_grid: bool

    def pairs(self) -> list[tuple[str, int]]:
        return [(variant, seed) for variant in self.variants for seed in self.seeds]


@dataclass
class Study:
    """Everything the summary reads from one study directory."""

    path: Path
    name: str
    runs: pd.DataFrame
    class_metrics: pd.DataFrame
    history: pd.DataFrame
    expected: Expected
    grid: GridConfig | None = None
    dataset: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def ok_runs(self) -> pd.DataFrame:
        """Rows of the runs table with status ok."""
        return self.runs[self.runs["status"] == "ok"]

    def run_config(self, variant: str, seed: int) -> RunConfig | None:
        """The RunConfig stored with a run, None when the run or its config is absent."""
        rows = self.runs[(self.runs["variant"] == variant) & (self.runs["seed"] == seed)]
        if rows.empty or "config" not in rows or not isinstance(rows["config"].iloc[0], str):
            return None
        return RunConfig.model_validate_json(rows["config"].iloc[0])

    def protocol(self) -> ProtocolConfig | None:
        """The grid's protocol, else the first stored run's."""
        if self.grid is not None:
            return self.grid.protocol
        if self.runs.empty:
            return None
        config = self.run_config(*self.runs[["variant", "seed"]].iloc[0])
        return config.protocol if config else None

    def early_stopping_splits(self) -> set[str]:
        """The splits early stopping watched, from the runs table, else from the protocol."""
        if "early_stopping_split" in self.runs:
            return {str(s) for s in self.runs["early_stopping_split"].dropna()}
        protocol = self.protocol()
        if protocol is None:
            return set()
        return {"test" if protocol.early_stops_on_test else "val"}


def _load_grid(path: Path, notes: list[str]) -> GridConfig | None:
    """grid.yaml through ablate.grid when it exists, else validated directly."""
    if not path.is_file():
        notes.append("grid.yaml not found: expected runs are taken from the store")
        return None
    try:
        from ablate.grid import load_grid
    except ImportError:
        load_grid = None
    try:
        if load_grid is not None:
            return load_grid(path)
        return GridConfig.model_validate(yaml.safe_load(path.read_text()))
    except (UserError, ValueError, yaml.YAMLError) as error:
        notes.append(f"grid.yaml could not be read ({error}); expected runs taken from the store")
        return None


def _variant_names(grid: GridConfig) -> list[str] | None:
    try:
        from ablate.grid import expand_variants
    except ImportError:
        return None
    return [variant.name for variant in expand_variants(grid)]


def _expected(grid: GridConfig | None, runs: pd.DataFrame, notes: list[str]) -> Expected:
    """Variants x seeds a study should hold; the store's own variants and seeds are added so
    that a run of an unexpected variant is still checked for its missing seeds."""
    stored_variants = list(dict.fromkeys(runs["variant"]))
    stored_seeds = sorted(int(seed) for seed in set(runs["seed"]))
    if grid is None:
        return Expected(stored_variants, stored_seeds, from_grid=False)
    seeds = list(dict.fromkeys([*grid.protocol.seed_list(), *stored_seeds]))
    variants = _variant_names(grid)
    if variants is None:
        notes.append("ablate.grid is unavailable: expected variants are taken from the store")
        return Expected(stored_variants, seeds, from_grid=False)
    return Expected(list(dict.fromkeys([*variants, *stored_variants])), seeds, from_grid=True)


def _load_dataset(path: Path, notes: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        notes.append("dataset.json not found: no cleaning report")
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        notes.append(f"dataset.json is not valid JSON ({error})")
        return None


def load_study(study_dir: str | Path) -> Study:
    """Read a study directory.

    Raises:
        UserError: the folder does not exist or holds no completed run.

    Example:
        >>> study = load_study("runs/quickstart")  # doctest: +SKIP
    """
    path = Path(study_dir)
    if not path.is_dir():
        raise UserError(f"{path}: study directory not found")
    runs = read_table(path, "runs")
    if runs.empty:
        raise UserError(f"{path / 'results' / 'runs'}: no completed runs (no Parquet files)")
    notes: list[str] = []
    grid = _load_grid(path / "grid.yaml", notes)
    runs["seed"] = runs["seed"].astype("int64")
    complete = runs[list(("variant", "seed"))]
    # Only runs whose `runs` file exists are complete: rows of unfinished runs are dropped.
    class_metrics = _complete_rows(read_table(path, "class_metrics"), complete)
    history = _complete_rows(read_table(path, "history"), complete)
    name = str(runs["study"].iloc[0]) if "study" in runs else (grid.study if grid else path.name)
    return Study(
        path=path,
        name=name,
        runs=runs,
        class_metrics=class_metrics,
        history=history,
        expected=_expected(grid, runs, notes),
        grid=grid,
        dataset=_load_dataset(path / "dataset.json", notes),
        notes=notes,
    )


def _complete_rows(table: pd.DataFrame, complete: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table
    table = table.copy()
    table["seed"] = table["seed"].astype("int64")
    return table.merge(complete.drop_duplicates(), on=["variant", "seed"], how="inner")


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


def run_status(study: Study) -> RunStatus:
    """Compare the runs table with the expected variants x seeds."""
    runs = study.runs
    present = set(zip(runs["variant"], runs["seed"].astype(int), strict=True))
    missing = [pair for pair in study.expected.pairs() if pair not in present]

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
        ok=int((runs["status"] == "ok").sum()),
        expected=len(study.expected.pairs()),
    )
