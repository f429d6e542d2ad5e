"""`ablate run` as a function: a grid's variants as Ray Tune trials, every run stored,
resumable, then pruning and the summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from ablate.engine.connection import (
    check_address,
    cluster_address,
    ray_connection,
    ray_is_running,
)
from ablate.engine.driver import Trainable, check_fits_this_machine, run_trials, versions
from ablate.engine.lock import LockOwner, StudyLock
from ablate.engine.messages import format_duration, plural
from ablate.engine.progress import ProgressPrinter
from ablate.engine.rounds import current_round, train_rounds
from ablate.engine.study import (
    PreparedStudy,
    prepare_study,
    report_runs,
    ship_dataset,
    write_study_files,
)
from ablate.engine.trainable import TrialSetup, train_variant
from ablate.errors import OUT_OF_SPACE, StudyIncomplete, UserError
from ablate.grid.load import GridSource
from ablate.prune.report import pruning_section
from ablate.prune.study import prune_study
from ablate.report.summarize import summarize
from ablate.store import StudyDir, check_writable
from ablate.store.fs import disk_full, disk_full_error, stops_when_disk_full


def run_grid(
    grid: GridSource,
    out: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    trainable: Trainable = train_variant,
    overrides: Sequence[str] = (),
) -> StudyDir:
    """Run every (variant, seed) of a grid as Ray Tune trials and summarise the study.

    Runs already in the study directory are skipped, so running again (or with `resume`)
    continues an interrupted study. Failed and diverged runs are recorded and listed; they
    do not stop the study.

    Args:
        grid: grid YAML file, or a grid built in Python (`ablate.load_grid`).
        out: study directory or URI (default runs/<study>).
        address: Ray cluster address (default RAY_ADDRESS, else a local Ray instance).
        resume: expect an existing study: only prints a note when there is none yet
            (running again continues a study either way).
        max_concurrent: trials at once (default: the grid's resources.max_concurrent).
        trainable: the trial function (tests wrap it to inject faults).
        overrides: `KEY=VALUE` changes to the grid (`--set`); grid.yaml stores the result.

    Returns:
        The study directory.

    Raises:
        UserError: bad grid, dataset, study directory or address (exit 2), before any run.
        StudyIncomplete: trials failed beyond their retries or the summary failed (exit 1;
            what failed was printed, and running again continues the study).

    Example:
        >>> run_grid("grids/quickstart.yaml", out="runs/demo")  # doctest: +SKIP
    """
    began = time.monotonic()
    prepared = prepare_study(grid, out, resume, overrides)
    run_prepared(prepared, address, max_concurrent, began, trainable)
    return prepared.study


def run_prepared(
    prepared: PreparedStudy,
    address: str | None = None,
    max_concurrent: int | None = None,
    began: float | None = None,
    trainable: Trainable = train_variant,
) -> None:
    """The rest of `run_grid` once `prepare_study` has checked the grid, the study directory
    and the dataset: check the address and resources, then train, prune and summarise.

    Raises:
        UserError, StudyIncomplete: as `run_grid`.
    """
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent must be at least 1, got {max_concurrent}")
    check_address(address)
    if cluster_address(address) is None and not ray_is_running():
        check_fits_this_machine(prepared.grid.resources)
    try:
        _run_locked(prepared, address, max_concurrent, began or time.monotonic(), trainable)
    except UserError:
        if prepared.created:
            _remove_refused_study(prepared.study)
        raise


def _remove_refused_study(study: StudyDir) -> None:
    """Remove a study directory this command created before refusing to run anything in it
    (a refusal leaves the disk as it was). Kept when it holds a finished run or another
    command's lock (a second `ablate run` started on the same new directory)."""
    if not study.exists() or study.read_lock() is not None:
        return
    if not study.results().run_files("runs"):
        study.location.delete_tree()


def _run_locked(
    prepared: PreparedStudy,
    address: str | None,
    max_concurrent: int | None,
    began: float,
    trainable: Trainable,
) -> None:
    """The locked part of `ablate run`: train what is pending, prune, summarise, report."""
    study = prepared.study
    check_writable(study.location)
    with StudyLock(study) as lock:
        # Read again under the lock: what is finished now is what this run may skip.
        finished = study.results(prepared.grid.study).completed()
        prepared.plan = replace(prepared.plan, finished=finished)
        write_study_files(prepared)
        _print_plan(prepared)
        errors: dict[str, str] = {}
        if _has_work(prepared):
            errors = train_pending(prepared, address, max_concurrent, lock.owner, trainable)
        else:
            _prune(prepared)  # finishes an analysis a killed run left behind; no-op otherwise
        wanted = current_round(prepared).pairs() if prepared.plan.adaptive else None
        missing = report_runs(prepared, wanted)
        summarized = _summarize(prepared)
    print(f"done in {format_duration(time.monotonic() - began)}: {study.uri}", flush=True)
    if errors or missing or not summarized:
        for variant, error in errors.items():
            print(f"error: trial {variant} failed after its retries: {error}", file=sys.stderr)
        if missing:
            print(
                f"error: {len(missing)} run(s) did not finish; run the same command again to "
                "continue the study",
                file=sys.stderr,
            )
        raise StudyIncomplete(
            f"{study.uri}: {len(errors)} trial(s) failed, {len(missing)} run(s) unfinished"
            + ("" if summarized else ", summary not written")
            + "; run the same command again to continue",
            study.uri,
        )


def _has_work(prepared: PreparedStudy) -> bool:
    """Whether any run is left: fixed seeds from the plan, adaptive ones from the rounds
    replayed on the stored runs."""
    if prepared.plan.adaptive:
        return bool(current_round(prepared).pending)
    return bool(prepared.plan.pending())


def _print_plan(prepared: PreparedStudy) -> None:
    plan = prepared.plan
    variants = plural(len(plan.variants), "variant")
    if plan.adaptive:
        print(
            f"study {prepared.grid.study}: {variants} x {plan.min_seeds}..{len(plan.seeds)} "
            f"seeds = {plan.fewest}..{plan.total} runs (adaptive seeds, decided on macro "
            f"{prepared.grid.analysis.metric}) -> {prepared.study.uri}",
            flush=True,
        )
        if plan.skipped:
            print(f"skipping {plan.skipped} finished run(s)", flush=True)
        return
    print(
        f"study {prepared.grid.study}: {variants} x {plural(len(plan.seeds), 'seed')} = "
        f"{plan.total} runs -> {prepared.study.uri}",
        flush=True,
    )
    if plan.skipped:
        print(
            f"skipping {plan.skipped} finished run(s); {plan.total - plan.skipped} to run",
            flush=True,
        )


def train_pending(
    prepared: PreparedStudy,
    address: str | None,
    max_concurrent: int | None,
    lock: LockOwner | None = None,
    trainable: Trainable = train_variant,
) -> dict[str, str]:
    """Run the unfinished (variant, seed) pairs on Ray (adaptive seeds: round after round);
    returns trial errors by variant. `lock`: the owner of study.lock, whom the trials check
    before they touch a run (None: no lock, as in the benchmarks' direct calls)."""
    plan = prepared.plan
    pending = plan.pending()
    resources = prepared.grid.resources
    configs = plan.variants if plan.adaptive else pending  # any variant may need a seed later
    setup = TrialSetup(
        study=prepared.grid.study,
        study_uri=prepared.study.uri,
        run_configs={variant: prepared.run_configs[variant] for variant in configs},
        seeds=plan.seeds,
        cpus=max(1, int(resources.cpu)),
        versions=versions(),
        lock=lock.to_json() if lock is not None else None,
    )
    concurrent = max_concurrent or resources.max_concurrent
    may_grow = cluster_address(address) is not None
    with ray_connection(address):
        data = ship_dataset(prepared)
        train = train_rounds if plan.adaptive else _train_fixed
        errors = train(prepared, setup, data, concurrent, may_grow, trainable)
        _stop_if_disk_filled(prepared.study, errors)
        # While Ray is up, pruning spreads its analyses over the cluster too.
        _prune(prepared)
    return errors


def _train_fixed(
    prepared: PreparedStudy,
    setup: TrialSetup,
    data: object,
    max_concurrent: int | None,
    may_grow: bool,
    trainable: Trainable,
) -> dict[str, str]:
    """A fixed number of seeds: one Tune run of every unfinished (variant, seed)."""
    plan = prepared.plan
    pending = plan.pending()
    printer = ProgressPrinter(
        pending={variant: len(seeds) for variant, seeds in pending.items()},
        finished_before=plan.skipped,
        total=plan.total,
    )
    return run_trials(
        setup,
        data,
        pending,
        prepared.grid.resources,
        max_concurrent,
        printer,
        prepared.study,
        may_grow=may_grow,
        trainable=trainable,
    )


def _stop_if_disk_filled(study: StudyDir, errors: dict[str, str]) -> None:
    """A trial that failed because the study's disk filled up stops the study here: the
    summary would only fail on the same disk, and the fix is space, not the grid.

    Raises:
        MachineError: naming the study directory and the trials that stopped.
    """
    filled = [variant for variant, error in errors.items() if OUT_OF_SPACE in error]
    if not filled and not (errors and disk_full(study.location)):
        return
    raise disk_full_error(study.location, f"trial(s) stopped: {', '.join(filled or errors)}")


def _prune(prepared: PreparedStudy) -> None:
    """Pruning sensitivity of the trained runs, when the grid asks for it (Ray still up)."""
    pruning = prepared.grid.pruning
    if pruning is None or not pruning.enabled:
        return
    print("pruning sensitivity ...", flush=True)
    with stops_when_disk_full(prepared.study.location, "the pruning analysis"):
        prune_study(prepared.study, pruning, on_ray=ray_is_running())


def _summarize(prepared: PreparedStudy) -> bool:
    """Write summary/ (tables, plots, report.html) unless it is current; False when it failed."""
    study = prepared.study
    if study.summary_is_current():
        print(f"summary is up to date: {study.summary_path()}", flush=True)
        return True
    try:
        with stops_when_disk_full(study.location, "writing the summary"):
            summarize(
                study,
                sections=[pruning_section],
                grid=prepared.grid,
                variants=prepared.variant_names,
            )
    except UserError as error:
        print(f"error: summary: {error}", file=sys.stderr)
        return False
    return True
