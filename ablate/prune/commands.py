"""`ablate prune STUDY_DIR`: the command-line edge of pruning sensitivity (nothing imports it)."""

from __future__ import annotations

import sys

from ablate.config import GridConfig, PruningConfig
from ablate.engine.connection import ray_connection
from ablate.errors import UserError
from ablate.prune.methods import PRUNE_METHODS
from ablate.prune.report import build_summary, pruning_section
from ablate.prune.scopes import SCOPES
from ablate.prune.study import run_pruning
from ablate.report.summarize import summarize
from ablate.store import StudyDir


def _grid_pruning(grid: GridConfig | None) -> PruningConfig:
    """The `pruning:` section of the study's stored grid, else the defaults."""
    return grid.pruning if grid is not None and grid.pruning is not None else PruningConfig()


def _check_names(option: str, names: list[str] | None, valid: list[str]) -> None:
    unknown = [name for name in names or [] if name not in valid]
    if unknown:
        raise UserError(
            f"{option}: unknown {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
        )


def resolve_config(
    grid: GridConfig | None,
    variants: list[str] | None,
    methods: list[str] | None,
    scopes: list[str] | None,
    amounts: list[float] | None,
) -> PruningConfig:
    """grid.yaml's pruning section (or defaults) with the command-line values on top."""
    _check_names("--methods", methods, PRUNE_METHODS.names())
    _check_names("--scope", scopes, SCOPES.names())
    outside = [amount for amount in amounts or [] if not 0.0 <= amount <= 1.0]
    if outside:
        raise UserError(f"--amounts: {outside} outside [0, 1] (shares of weights to prune)")
    if amounts is not None and not amounts:
        raise UserError("--amounts: no amount given")
    base = _grid_pruning(grid)
    overrides = {"variants": variants, "methods": methods, "scopes": scopes, "amounts": amounts}
    return base.model_copy(
        update={key: value for key, value in overrides.items() if value is not None}
    )


def prune_command(
    study_dir: str,
    variants: list[str] | None = None,
    methods: list[str] | None = None,
    scopes: list[str] | None = None,
    amounts: list[float] | None = None,
    address: str | None = None,
) -> None:
    """Run the pruning analysis of a study, print the targets whose pruning hurts most and
    rebuild the study's summary and report.html.

    Settings already analysed for a run are kept and skipped; new methods, scopes or amounts
    add their rows to the run's pruning table.

    Raises:
        UserError: a missing study, no completed runs, unknown variants, methods or scopes,
            amounts outside [0, 1].

    Example:
        $ ablate prune runs/quickstart --methods l1_unstructured --scope modules --amounts 0.25,0.5
    """
    study = StudyDir.open(study_dir)
    study.require_study()
    grid = study.read_grid()
    config = resolve_config(grid, variants, methods, scopes, amounts)
    runs = study.results().ok_runs()
    if runs.empty:
        raise UserError(f"{study_dir}: no completed runs in results/runs; run `ablate run` first")
    _check_names("--variants", config.variants, sorted(set(runs["variant"])))
    with ray_connection(address):  # joins --address/RAY_ADDRESS, else a local Ray
        errors = run_pruning(study, config, on_ray=True)
    _print_worst(study)
    _refresh_report(study, grid)
    if errors:
        lines = "\n".join(f"  - {run}: {error}" for run, error in errors.items())
        raise UserError(f"{study_dir}: pruning failed for {len(errors)} run(s)\n{lines}")


def _refresh_report(study: StudyDir, grid: GridConfig | None) -> None:
    """Rebuild summary/ and report.html, whose pruning section shows the new results."""
    try:
        summarize(study, sections=[pruning_section], grid=grid)
    except UserError as error:  # the pruning results are stored; only the report is stale
        print(f"warning: report.html not refreshed: {error}", file=sys.stderr)


def _print_worst(study: StudyDir) -> None:
    result = build_summary(study, figures=False)
    if result is None:
        print("no pruning results")
        return
    print(f"pruning results: {study.path('results', 'pruning')}")
    print("largest macro Dice drops (mean over seeds):")
    print(result.worst.to_string(index=False, float_format=lambda value: f"{value:.4f}"))
