"""`ablate.run`: a whole study on Ray from Python, as `ablate run` runs it."""

from __future__ import annotations

from collections.abc import Sequence

from ablate.api.study import Study
from ablate.engine.run import run_grid
from ablate.grid.load import GridSource


def run(
    grid: GridSource,
    *,
    out: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    overrides: Sequence[str] = (),
) -> Study:
    """Run every (variant, seed) of a grid as Ray Tune trials, then prune and summarise:
    `ablate run` as a function (the same code), printing the same progress lines.

    Finished runs in `out` are skipped, so calling it again continues a study. In a process
    where Ray is already initialised (`ray.init()` in a notebook), that Ray is used and left
    running; otherwise a local instance (or the cluster at `address` / RAY_ADDRESS) is joined
    for the call.

    Args:
        grid: a grid file, or a grid from `ablate.load_grid` (a `GridConfig`).
        out: study directory or URI (default runs/<study>).
        address: Ray cluster address.
        resume: expect an existing study: only prints a note when there is none yet
            (calling again continues a study either way).
        max_concurrent: trials at once (default: the grid's resources.max_concurrent).
        overrides: `KEY=VALUE` changes, as `--set` (`protocol.seeds=1`).

    Returns:
        The study, opened (`Study`).

    Raises:
        UserError: bad grid, override, dataset, study directory or address, before any run.
        StudyIncomplete: trials failed beyond their retries, or the summary failed; the
            finished runs are stored and calling again continues.

    Example:
        >>> study = run("grids/quickstart.yaml", out="runs/demo")  # doctest: +SKIP
    """
    study = run_grid(grid, out, address, resume, max_concurrent, overrides=overrides)
    return Study(study)
