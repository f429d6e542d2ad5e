"""Fixtures of the grid tests: write grid files, and a minimal valid grid to start from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

MINIMAL = """\
study: tiny
data:
  synthetic: {per_class: 4, size: 32}
protocol:
  seeds: 2
baseline:
  model:
    widths: [8, 16, 32]
  train:
    epochs: 1
"""
"""A valid grid: the baseline alone (lr 1e-3, norm batch-double, dropout 0 by default)."""


@pytest.fixture
def write_grid(tmp_path: Path) -> Callable[..., Path]:
    """write_grid(text, name="grid.yaml") -> the path of a new grid file in tmp_path."""

    def write(text: str, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def minimal() -> str:
    """The text of a minimal valid grid (see MINIMAL)."""
    return MINIMAL


def _line_of(text: str, fragment: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in the grid text")


@pytest.fixture
def line_of() -> Callable[[str, str], int]:
    """line_of(text, fragment) -> 1-based number of the first line containing fragment."""
    return _line_of
