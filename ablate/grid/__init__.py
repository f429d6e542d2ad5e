"""Declarative ablation grids: load a YAML grid, expand it into variants, describe it.

A grid is a baseline recipe plus the components removed or swapped; `expand_variants` turns
it into one `Variant` per run configuration, the baseline first.
"""

from ablate.grid.expand import Variant, dump_grid, expand_variants, runs_count, runs_range
from ablate.grid.load import load_grid, load_grid_variants

__all__ = [
    "Variant",
    "dump_grid",
    "expand_variants",
    "load_grid",
    "load_grid_variants",
    "runs_count",
    "runs_range",
]
