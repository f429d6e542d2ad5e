"""`ablate grid check|show|components`: validate grids and describe their variants."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from ablate.config import GridConfig, Recipe
from ablate.errors import GridError
from ablate.grid.components import SWAPPABLE, allowed_values, removal_source, removals_for
from ablate.grid.expand import Variant, format_value, read_value
from ablate.grid.load import load_grid_variants
from ablate.plugins import GROUP, loaded_plugins
from ablate.registry import BUILTIN


def grid_check(grids: list[str], overrides: Sequence[str] = ()) -> None:
    """Validate every grid; print its variants and run count, or every problem of every file.

    `overrides` (`--set KEY=VALUE`) apply to each grid.

    Example:
        $ ablate grid check grids/*.yaml --set protocol.seeds=1

    Raises:
        GridError: the last failing grid's problems, after those of the others were printed.
    """
    failures: list[GridError] = []
    for path in grids:
        try:
            grid, variants = load_grid_variants(path, overrides)
        except GridError as error:
            failures.append(error)
            continue
        print(
            f"{path}: study {grid.study!r}, {_runs_line(grid, len(variants))} ({_seeds_note(grid)})"
        )
        names = ", ".join(variant.name for variant in variants)
        print(
            textwrap.fill(
                names,
                width=100,
                break_on_hyphens=False,
                initial_indent="  ",
                subsequent_indent="  ",
            )
        )
        _print_test_split_note(grid, variants)
    # One message per failed file, each naming its file; the last one leaves through the CLI.
    for error in failures[:-1]:
        print(f"error: {error}", file=sys.stderr)
    if failures:
        raise failures[-1]


def _print_test_split_note(grid: GridConfig, variants: list[Variant]) -> None:
    """Flag a protocol without validation split: early stopping then watches the test split."""
    if not grid.protocol.early_stops_on_test:
        return
    watching = [variant.name for variant in variants if variant.recipe.train.patience is not None]
    if watching:
        print(
            "  note: protocol.val_fraction is 0, so early stopping of "
            f"{'every variant' if len(watching) == len(variants) else ', '.join(watching)} "
            "watches the TEST split: their test numbers will be optimistic"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _runs_line(grid: GridConfig, variants: int) -> str:
    """'5 variants x 3 seeds = 15 runs'; adaptive seeds give ranges: '5 variants x 3..8
    seeds = 15..40 runs'."""
    protocol = grid.protocol
    low, high = len(protocol.min_seed_list()), len(protocol.max_seed_list())
    shown = _count(variants, "variant")
    if not protocol.is_adaptive:
        return f"{shown} x {_count(high, 'seed')} = {_count(variants * high, 'run')}"
    return f"{shown} x {low}..{high} seeds = {variants * low}..{variants * high} runs"


def _seeds_note(grid: GridConfig) -> str:
    """'seeds 0, 1, 2', or what adaptive seeds will do."""
    protocol = grid.protocol
    seeds = protocol.max_seed_list()
    if not protocol.is_adaptive:
        return f"seeds {', '.join(map(str, seeds))}"
    futility = (
        " and some seed count up to max could still decide it (futility)"
        if protocol.seeds.futility
        else ""
    )
    return (
        f"adaptive: seeds 0..{len(seeds) - 1}; every variant runs {len(protocol.min_seed_list())}, "
        f"then one more per round while its macro {grid.analysis.metric} is inconclusive"
        f"{futility}"
    )


def grid_show(grid: str, overrides: Sequence[str] = ()) -> None:
    """Print the variants of a grid with what each changes against the baseline.

    Example:
        $ ablate grid show grids/quickstart.yaml --set ablations.swap.lr=[1e-4]
    """
    config, variants = load_grid_variants(grid, overrides)
    print(f"study {config.study!r}: {_runs_line(config, len(variants))}")
    baseline = variants[0]
    rows = [("variant", "changes vs baseline")]
    rows += [(variant.name, describe_changes(variant, baseline)) for variant in variants]
    width = max(len(name) for name, _ in rows)
    for name, changes in rows:
        print(f"{name:<{width}}  {changes}")
    _print_test_split_note(config, variants)


def describe_changes(variant: Variant, baseline: Variant) -> str:
    """'model.norm: batch-double -> none; train.lr: 0.001 -> 0.0001' ('-' for the baseline)."""
    parts = [
        _describe_change(path, read_value(baseline.recipe, path), new)
        for path, new in variant.changes.items()
    ]
    return "; ".join(parts) or "-"


def _describe_change(path: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        return f"{path}: {_dict_diff(old, new)}"
    return f"{path}: {_shown_value(old)} -> {_shown_value(new)}"


def _shown_value(value: Any) -> str:
    """`format_value`, except that an empty list reads `[]`: the variant-name form of it is
    nothing at all, which in a change would look like a missing value."""
    if isinstance(value, list | tuple) and not value:
        return "[]"
    return format_value(value)


def _dict_diff(old: dict, new: dict) -> str:
    """'-rotate, +elastic 0.5, blur 0.2 -> 0.4' for two augmentation op mappings."""
    removed = [f"-{key}" for key in old if key not in new]
    added = [f"+{key} {_shown_value(value)}" for key, value in new.items() if key not in old]
    changed = [
        f"{key} {_shown_value(old[key])} -> {_shown_value(value)}"
        for key, value in new.items()
        if key in old and old[key] != value
    ]
    return ", ".join(removed + added + changed)


def grid_components() -> None:
    """Print every removable component (with the package it comes from: `ablate` or a
    plug-in) and its meaning, and every swappable key with its values (a plug-in's marked)."""
    print("Removable components (ablations.remove; variant name no-<component>):")
    removals = removals_for(Recipe())
    rows = [("skip-K", BUILTIN, "skip connection of encoder level K off (K = 1..depth)")]
    rows += [
        (removal.name, removal_source(removal.name), removal.meaning)
        for removal in removals
        if not removal.name.startswith("skip-")
    ]
    _print_rows([("component", "from", "meaning"), *rows])
    print("\nSwappable keys (ablations.swap, ablations.variants, ablations.factorial):")
    print("  an alias below or its dotted path; augment.ops.<op> sets one op's probability")
    _print_rows([(f"{alias} ({path})", allowed_values(path)) for alias, path in SWAPPABLE.items()])
    plugins = loaded_plugins()
    print(f"\nPlug-ins (entry-point group {GROUP}): {len(plugins) or 'none'} loaded")
    for plugin in plugins:
        print(f"  {plugin}")


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [f"{cell:<{width}}" for cell, width in zip(row, widths, strict=False)]
        print("  " + "  ".join([*cells, row[-1]]))
