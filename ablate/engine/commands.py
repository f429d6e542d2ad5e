"""`ablate run` and `ablate status`: the command-line edges of the engine (nothing imports
them)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ablate.engine.status import study_status
from ablate.engine.study import prepare_study
from ablate.store import StudyDir


def run_command(
    grid: str,
    out: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    overrides: Sequence[str] = (),
) -> None:
    """Run every (variant, seed) of a grid as Ray Tune trials and summarise the study.

    See `ablate.engine.run.run_grid`; exit 2 on bad input (before any run), 1 when trials
    failed beyond their retries or the summary failed.

    Example:
        $ ablate run grids/quickstart.yaml --out runs/demo --set protocol.seeds=1
    """
    began = time.monotonic()
    # The input is checked before torch and Ray are imported (hundreds of MB, seconds): a
    # bad grid or dataset is answered in about a second and within a hundred MB or so.
    prepared = prepare_study(grid, out, resume, overrides)
    from ablate.engine.run import run_prepared  # torch and Ray load here, input known good

    run_prepared(prepared, address, max_concurrent, began)


def status_command(study_dir: str, as_json: bool = False) -> None:
    """Print where a study stands: per variant, seeds ok, failed, diverged, running and
    pending, the last error, the mean seed time; the time left; whether the summary is
    current. Reads only (never takes the study's lock); works while `ablate run` runs.

    Raises:
        UserError: not a study directory (exit 2), or a damaged file.

    Example:
        $ ablate status runs/quickstart --json
    """
    status = study_status(StudyDir.open(study_dir))
    print(status.to_json() if as_json else status.format())
