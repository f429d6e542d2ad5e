"""A study made ready to run: grid, variants, study directory, dataset and what is left.

Everything that can be wrong with the input (the grid, the study directory, a study made
from another grid, the dataset) is checked here, before Ray starts or any file is written,
so bad input costs seconds and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ablate.config import GridConfig
from ablate.data.ebhi import SegmentationData
from ablate.data.source import clear_loaded, load_grid_data
from ablate.engine.resume import Plan, check_compatible
from ablate.errors import UserError
from ablate.grid import Variant, dump_grid, load_grid_variants
from ablate.grid.load import GridSource, grid_source
from ablate.store import StudyDir


@dataclass
class PreparedStudy:
    """A validated study, ready to run."""

    grid: GridConfig
    variants: list[Variant]
    study: StudyDir
    run_configs: dict[str, str]
    """variant name -> RunConfig JSON."""
    data: SegmentationData | None
    """The decoded dataset; None once it has been shipped to Ray's object store."""
    plan: Plan
    created: bool
    """True when the study directory did not exist before this command."""

    @property
    def variant_names(self) -> list[str]:
        return [variant.name for variant in self.variants]


def default_study_dir(grid: GridConfig) -> str:
    """runs/<study name>, relative to the working directory."""
    return str(Path("runs") / grid.study)


def prepare_study(
    source: GridSource, out: str | None, resume: bool, overrides: Sequence[str] = ()
) -> PreparedStudy:
    """Validate grid, study directory and dataset, without writing anything.

    The grid is loaded and expanded once here (a file with `overrides` applied, or a grid
    built in Python); everything after uses this object.

    Raises:
        UserError: bad grid, dataset or study directory, or a study made from another grid.
    """
    grid, variants = load_grid_variants(source, overrides)
    if out is not None and not out.strip():
        raise UserError("--out is empty: give a study directory or URI")
    study = StudyDir.open(out or default_study_dir(grid))
    study.check_usable_for_new_study("--out" if out else "the default study directory")
    previous = study.read_grid() if study.is_study() else None
    if previous is not None:
        check_compatible(previous, grid, variants, study.uri)
        study.results().read("runs")  # a damaged runs file is refused before any work
    elif resume:
        print(f"--resume: no study at {study.uri} yet; starting it", flush=True)
    created = not study.exists()
    data = load_grid_data(grid_source(source), grid.data)
    protocol = grid.protocol
    plan = Plan(
        variants=[variant.name for variant in variants],
        seeds=protocol.max_seed_list(),
        finished=study.results(grid.study).completed(),
        min_seeds=len(protocol.min_seed_list()) if protocol.is_adaptive else None,
    )
    run_configs = {v.name: grid.run_config(v.recipe).model_dump_json() for v in variants}
    return PreparedStudy(grid, variants, study, run_configs, data, plan, created)


def write_study_files(prepared: PreparedStudy) -> None:
    """grid.yaml (the resolved grid as run) and dataset.json (cleaning report, categories).

    Unchanged files are left alone, so their times still tell when the study last changed.
    """
    data = prepared.data
    prepared.study.write_grid(dump_grid(prepared.grid))
    prepared.study.write_dataset({**data.report.to_dict(), "categories": list(data.categories)})


def ship_dataset(prepared: PreparedStudy) -> object:
    """Put the dataset in Ray's object store once and drop the driver's own heap copy.

    Trials read the arrays from the object store (zero-copy on the same node), so the driver
    holds one copy only and workers on other machines need no copy of the dataset folder.
    Returns the ObjectRef.
    """
    import ray

    reference = ray.put(prepared.data)
    prepared.data = None
    clear_loaded()
    return reference


def report_runs(
    prepared: PreparedStudy, wanted: list[tuple[str, int]] | None = None
) -> list[tuple[str, int]]:
    """Print the study's run counts and every failed or diverged run; returns missing pairs.

    `wanted`: the runs the study should have (adaptive seeds: those its rounds scheduled);
    default every variant x seed of the plan.
    """
    runs = prepared.study.results(prepared.grid.study).read("runs")
    plan = prepared.plan
    if wanted is None:
        wanted = [(v, s) for v in plan.variants for s in plan.seeds]
    wanted = set(wanted)
    present = set()
    if not runs.empty:
        runs = runs[[(v, s) in wanted for v, s in zip(runs["variant"], runs["seed"], strict=True)]]
        present = set(zip(runs["variant"], runs["seed"], strict=True))
    counts = runs["status"].value_counts().to_dict() if not runs.empty else {}
    summary = ", ".join(
        f"{counts.get(status, 0)} {status}" for status in ("ok", "failed", "diverged")
    )
    print(f"runs: {len(present)}/{len(wanted)} finished ({summary})", flush=True)
    for row in runs.itertuples(index=False):
        if row.status != "ok":
            print(f"  {row.status}: {row.variant} seed {row.seed}: {row.error}", flush=True)
    return sorted(wanted - present)
