"""`ablate run`: a grid's variants as Ray Tune trials, every run stored, resumable.

Order matters here: everything that can be wrong with the input (the grid, the dataset, the
study directory, a study made from another grid, a second run on the same study) is checked
before Ray starts or any file is written, so bad input costs seconds and changes nothing.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ablate.config import GridConfig
from ablate.data.ebhi import SegmentationData
from ablate.engine.lock import LOCK_NAME, StudyLock
from ablate.engine.messages import format_duration, plural
from ablate.engine.resume import Plan, check_compatible
from ablate.errors import OUT_OF_SPACE, UserError
from ablate.store import ResultStore, StudyLocation, check_writable, resolve_study
from ablate.store.fs import disk_full, disk_full_error, stops_when_disk_full

GRID_FILE = "grid.yaml"
DATASET_FILE = "dataset.json"
CRASH_FLAG_ENV = "ABLATE_TEST_CRASH_FLAG"
"""TEST HOOK: see `TrialSetup.crash_flag`."""
EXIT_TRIALS_FAILED = 1


@dataclass
class Study:
    """A validated study, ready to run: grid, variants, dataset and where results go."""

    grid: GridConfig
    location: StudyLocation
    run_configs: dict[str, str]
    data: SegmentationData | None
    """The decoded dataset; None once it has been shipped to Ray's object store."""
    plan: Plan


def default_study_dir(grid: GridConfig) -> str:
    """runs/<study name>, relative to the working directory."""
    return str(Path("runs") / grid.study)


def _previous_grid(location: StudyLocation) -> GridConfig | None:
    """The grid a study directory was made from, or None for a new study."""
    from ablate.grid import load_grid

    text = location.read_text(GRID_FILE)
    if text is None:
        return None
    if location.local:
        return load_grid(location.path(GRID_FILE))
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder, GRID_FILE)
        copy.write_text(text)
        return load_grid(copy)


def prepare_study(grid_path: str, out: str | None, resume: bool) -> Study:
    """Validate grid, study directory and dataset, without writing anything.

    Raises:
        UserError: bad grid, dataset or study directory, or a study made from another grid.
    """
    from ablate.data.source import load_grid_data
    from ablate.grid import expand_variants, load_grid

    grid = load_grid(grid_path)
    variants = expand_variants(grid)
    if out is not None and not out.strip():
        raise UserError("--out is empty: give a study directory or URI")
    location = resolve_study(out or default_study_dir(grid))
    previous = _previous_grid(location)
    if previous is not None:
        check_compatible(previous, grid, location.uri)
    elif resume:
        print(f"--resume: no study at {location.uri} yet; starting it", flush=True)
    data = load_grid_data(grid_path, grid.data)
    plan = Plan(
        variants=[variant.name for variant in variants],
        seeds=grid.protocol.seed_list(),
        finished=ResultStore(location, study=grid.study).completed(),
    )
    run_configs = {v.name: grid.run_config(v.recipe).model_dump_json() for v in variants}
    return Study(grid=grid, location=location, run_configs=run_configs, data=data, plan=plan)


def write_study_files(study: Study) -> None:
    """grid.yaml (the resolved grid as run) and dataset.json (cleaning report, categories).

    Unchanged files are left alone, so their times still tell when the study last changed.
    """
    from ablate.grid import dump_grid

    dataset = {**study.data.report.to_dict(), "categories": list(study.data.categories)}
    files = {GRID_FILE: dump_grid(study.grid), DATASET_FILE: json.dumps(dataset, indent=2)}
    for name, text in files.items():
        if study.location.read_text(name) != text:
            study.location.write_text(text, name)


def train_pending(
    study: Study, address: str | None, max_concurrent: int | None, lock: str | None = None
) -> dict[str, str]:
    """Run the unfinished (variant, seed) pairs on Ray; returns trial errors by variant.

    `lock` is the study.lock content of this command: trials stop when it is not theirs.
    """
    import os

    from ablate.engine.driver import cluster_address, ray_connection, run_trials, versions
    from ablate.engine.progress import ProgressPrinter
    from ablate.engine.trainable import TrialSetup

    pending = study.plan.pending()
    resources = study.grid.resources
    setup = TrialSetup(
        study=study.grid.study,
        study_uri=study.location.uri,
        run_configs={variant: study.run_configs[variant] for variant in pending},
        seeds=study.plan.seeds,
        cpus=max(1, int(resources.cpu)),
        crash_flag=os.environ.get(CRASH_FLAG_ENV),
        versions=versions(),
        lock=lock,
    )
    printer = ProgressPrinter(
        pending={variant: len(seeds) for variant, seeds in pending.items()},
        finished_before=study.plan.skipped,
        total=study.plan.total,
    )
    with ray_connection(address):
        outcome = run_trials(
            setup,
            ship_dataset(study),
            pending,
            resources,
            max_concurrent or resources.max_concurrent,
            printer,
            study.location,
            may_grow=cluster_address(address) is not None,
        )
        _stop_if_disk_filled(study.location, outcome.errors)
        # While Ray is up, pruning spreads its analyses over the cluster too.
        _prune(study)
    return outcome.errors


def _stop_if_disk_filled(location: StudyLocation, errors: dict[str, str]) -> None:
    """A trial that failed because the study's disk filled up stops the study here: the
    summary would only fail on the same disk, and the fix is space, not the grid.

    Raises:
        MachineError: naming the study directory and the trials that stopped.
    """
    filled = [variant for variant, error in errors.items() if OUT_OF_SPACE in error]
    if not filled and not (errors and disk_full(location)):
        return
    raise disk_full_error(location, f"trial(s) stopped: {', '.join(filled or errors)}")


def ship_dataset(study: Study) -> object:
    """Put the dataset in Ray's object store once and drop the driver's own heap copy.

    Trials read the arrays from the object store (zero-copy on the same node), so the driver
    holds one copy only and workers on other machines need no copy of the dataset folder.
    Returns the ObjectRef.
    """
    import ray

    from ablate.data.source import clear_loaded

    reference = ray.put(study.data)
    study.data = None
    clear_loaded()
    return reference


def _check_address(address: str | None) -> None:
    """An unreachable or non-Ray address is bad input: refuse it before anything is written."""
    from ablate.engine.driver import (
        address_source,
        check_joinable,
        check_reachable,
        cluster_address,
    )

    target = cluster_address(address)
    if not target:
        return
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return  # the caller's Ray is used as it is
    source = address_source(address)
    check_reachable(target, source)
    check_joinable(target, source)


def _prune(study: Study) -> None:
    """Pruning sensitivity of the trained runs, when the grid asks for it (Ray still up)."""
    pruning = study.grid.pruning
    if pruning is None or not pruning.enabled:
        return
    try:
        from ablate.prune import prune_study
    except ImportError as error:
        print(f"warning: pruning skipped, ablate.prune is unavailable ({error})", file=sys.stderr)
        return
    print("pruning sensitivity ...", flush=True)
    with stops_when_disk_full(study.location, "the pruning analysis"):
        prune_study(study.location.uri, pruning)


def summary_is_current(location: StudyLocation) -> bool:
    """True when summary/report.html is newer than every result and the grid (local studies)."""
    if not location.local:
        return False
    report = location.local_path("summary", "report.html")
    if not report.is_file():
        return False
    inputs = [*location.local_path("results").rglob("*.parquet"), location.local_path(GRID_FILE)]
    newest = max((path.stat().st_mtime for path in inputs if path.exists()), default=0.0)
    return report.stat().st_mtime >= newest


def _summarize(study: Study) -> bool:
    """Write summary/ (tables, plots, report.html); False when it failed."""
    try:
        from ablate.report.commands import summarize_command
    except ImportError as error:
        print(f"warning: summary skipped, ablate.report is unavailable ({error})", file=sys.stderr)
        return False
    try:
        with stops_when_disk_full(study.location, "writing the summary"):
            summarize_command(study.location.uri, "dice")
    except UserError as error:
        print(f"error: summary: {error}", file=sys.stderr)
        return False
    return True


def report_runs(study: Study) -> list[tuple[str, int]]:
    """Print the study's run counts and every failed or diverged run; returns missing pairs."""
    store = ResultStore(study.location, study=study.grid.study)
    runs = store.read("runs")
    wanted = {(v, s) for v in study.plan.variants for s in study.plan.seeds}
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


def run_command(
    grid: str,
    out: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
) -> None:
    """Run every (variant, seed) of a grid as Ray Tune trials and summarise the study.

    Runs already in the study directory are skipped, so running again (or with --resume)
    continues an interrupted study. Failed and diverged runs are recorded and listed; they
    do not stop the study.

    Args:
        grid: grid YAML file.
        out: study directory or URI (default runs/<study>).
        address: Ray cluster address (default RAY_ADDRESS, else a local Ray instance).
        resume: continue an existing study directory (running again does the same).
        max_concurrent: trials at once (default: the grid's resources.max_concurrent).

    Raises:
        UserError: bad grid, dataset, study directory or address (exit 2), before any run.
        SystemExit: code 1 when trials failed beyond their retries or the summary failed.

    Example:
        >>> run_command("grids/quickstart.yaml", out="runs/demo")  # doctest: +SKIP
    """
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent must be at least 1, got {max_concurrent}")
    began = time.monotonic()
    study = prepare_study(grid, out, resume)
    _check_address(address)
    created = not study.location.exists()
    try:
        _run_study(study, address, max_concurrent, began)
    except UserError:
        if created:
            _remove_refused_study(study.location)
        raise


def _remove_refused_study(location: StudyLocation) -> None:
    """Remove a study directory this command created before refusing to run anything in it
    (a refusal leaves the disk as it was). Kept when it holds a finished run or another
    command's lock (a second `ablate run` started on the same new directory)."""
    if not location.exists() or location.exists(LOCK_NAME):
        return
    if not ResultStore(location).run_files("runs"):
        location.fs.delete_dir(location.root)


def _run_study(study: Study, address: str | None, max_concurrent: int | None, began: float) -> None:
    """The locked part of `ablate run`: train what is pending, prune, summarise, report."""
    check_writable(study.location)
    with StudyLock(study.location) as lock:
        # Read again under the lock: what is finished now is what this run may skip.
        finished = ResultStore(study.location, study=study.grid.study).completed()
        study.plan = replace(study.plan, finished=finished)
        write_study_files(study)
        plan = study.plan
        print(
            f"study {study.grid.study}: {plural(len(plan.variants), 'variant')} x "
            f"{plural(len(plan.seeds), 'seed')} "
            f"= {plan.total} runs -> {study.location.uri}",
            flush=True,
        )
        if plan.skipped:
            print(
                f"skipping {plan.skipped} finished run(s); {plan.total - plan.skipped} to run",
                flush=True,
            )
        errors: dict[str, str] = {}
        if plan.pending():
            errors = train_pending(study, address, max_concurrent, lock.owner.to_json())
        else:
            _prune(study)  # finishes an analysis a killed run left behind; no-op otherwise
        missing = report_runs(study)
        if summary_is_current(study.location):
            print(f"summary is up to date: {study.location.path('summary')}", flush=True)
            summarized = True
        else:
            summarized = _summarize(study)
    print(f"done in {format_duration(time.monotonic() - began)}: {study.location.uri}", flush=True)
    if errors or missing or not summarized:
        for variant, error in errors.items():
            print(f"error: trial {variant} failed after its retries: {error}", file=sys.stderr)
        if missing:
            print(
                f"error: {len(missing)} run(s) did not finish; run the same command again to "
                "continue the study",
                file=sys.stderr,
            )
        raise SystemExit(EXIT_TRIALS_FAILED)
