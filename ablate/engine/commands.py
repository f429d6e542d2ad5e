"""`ablate run`: the command-line edge of the engine (nothing imports it)."""

from __future__ import annotations

from ablate.engine.run import run_grid


def run_command(
    grid: str,
    out: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
) -> None:
    """Run every (variant, seed) of a grid as Ray Tune trials and summarise the study.

    See `ablate.engine.run.run_grid`; exit 2 on bad input (before any run), 1 when trials
    failed beyond their retries or the summary failed.

    Example:
        $ ablate run grids/quickstart.yaml --out runs/demo
    """
    run_grid(grid, out, address, resume, max_concurrent)
