"""Errors that the command line turns into one clear message and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a grid, a dataset, an argument.

    The CLI prints ``str(error)`` (no traceback) and exits with code 2. The message must name
    the culprit (file, YAML key path, category folder) and say what is wrong.

    Example:
        >>> raise UserError("grids/x.yaml: baseline.train.lr: must be > 0, got -1")
    """


class GridError(UserError):
    """A grid that does not validate; carries every problem found, each on its own line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in grid\n{lines}")


class DatasetError(UserError):
    """A dataset folder that is missing, empty, not in the EBHI layout, or has no usable pair."""
