"""Expansion of a grid into variants: names, changes, factorial products, components."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.config import AugmentOp, GridConfig, Recipe
from ablate.errors import GridError
from ablate.grid import Variant, expand_variants, load_grid, runs_count
from ablate.grid.components import (
    SWAPPABLE,
    ComponentError,
    allowed_values,
    removal_changes,
    removals_for,
    resolve_key,
)
from ablate.grid.expand import format_value

WriteGrid = Callable[..., Path]


def _expand(write_grid: WriteGrid, minimal: str, ablations: str) -> list[Variant]:
    return expand_variants(load_grid(write_grid(minimal + ablations)))


def test_variant_names_and_changes(write_grid: WriteGrid, minimal: str) -> None:
    variants = _expand(
        write_grid,
        minimal,
        "ablations:\n"
        "  remove: [skip-2, norm, aug-rotate]\n"
        "  swap:\n"
        "    norm: [batch]\n"
        "    lr: [1e-4, 3.0e-6]\n"
        "    loss: ['0.7*dice + 0.3*jaccard']\n"
        "    widths: [[4, 8, 16]]\n"
        "    augment.ops.blur: [0.9]\n"
        "  variants:\n"
        "    sgd-fast: {optimizer: sgd, train.lr: 0.01}\n",
    )
    by_name = {variant.name: variant for variant in variants}
    assert list(by_name) == [
        "baseline",
        "no-skip-2",
        "no-norm",
        "no-aug-rotate",
        "norm=batch",
        "lr=0.0001",
        "lr=3e-6",
        "loss=0.7*dice+0.3*jaccard",
        "widths=4-8-16",
        "ops.blur=0.9",
        "sgd-fast",
    ]
    assert by_name["no-skip-2"].changes == {"model.disabled_skips": [2]}
    assert by_name["no-skip-2"].recipe.model.skip_enabled(1)
    assert not by_name["no-skip-2"].recipe.model.skip_enabled(2)
    assert by_name["no-norm"].changes == {"model.norm": "none"}
    assert "rotate" not in by_name["no-aug-rotate"].recipe.augment.ops
    assert by_name["lr=0.0001"].recipe.train.lr == 1e-4  # '1e-4' is a string in YAML 1.1
    assert by_name["lr=0.0001"].source == "ablations.swap.lr[0]"
    assert by_name["ops.blur=0.9"].changes == {"augment.ops.blur": 0.9}
    assert by_name["sgd-fast"].changes == {"train.optimizer": "sgd", "train.lr": 0.01}
    # Every recipe differs from the baseline in exactly its changes.
    baseline = by_name["baseline"].recipe
    assert by_name["norm=batch"].recipe == baseline.model_copy(
        update={"model": baseline.model.model_copy(update={"norm": "batch"})}
    )


def test_factorial_is_the_full_product_minus_the_baseline(
    write_grid: WriteGrid, minimal: str
) -> None:
    variants = _expand(
        write_grid,
        minimal,
        "ablations:\n  factorial:\n    norm: [none, batch, batch-double]\n"
        "    loss: [bce, dice]\n    optimizer: [sgd, adam]\n",
    )
    names = [variant.name for variant in variants]
    # 3 x 2 x 2 = 12 combinations; norm=batch-double,loss=dice,optimizer=adam is the baseline.
    assert len(names) == 1 + 11
    assert "norm=none,loss=bce,optimizer=sgd" in names
    assert "norm=batch-double,loss=dice,optimizer=adam" not in names
    combo = variants[names.index("norm=none,loss=dice,optimizer=adam")]
    assert combo.changes == {"model.norm": "none"}


def test_factorial_value_problem_is_reported_at_its_key(
    write_grid: WriteGrid, minimal: str
) -> None:
    text = minimal + "ablations:\n  factorial:\n    norm: [none, bn]\n    lr: [0.1]\n"
    with pytest.raises(GridError, match=r"ablations\.factorial\.norm\[1\] \(line 13\)"):
        load_grid(write_grid(text))


def test_factorial_limit(write_grid: WriteGrid, minimal: str) -> None:
    values = ", ".join(str(value) for value in range(1, 40))
    text = (
        minimal + f"ablations:\n  factorial:\n    epochs: [{values}]\n    batch_size: [{values}]\n"
    )
    with pytest.raises(GridError, match="1521 combinations"):
        load_grid(write_grid(text))


def test_named_variant_combines_removals_and_swaps(write_grid: WriteGrid, minimal: str) -> None:
    (_, variant) = _expand(
        write_grid,
        minimal,
        "ablations:\n  variants:\n    bare: {remove: [skips, norm], lr: 0.01}\n",
    )
    assert variant.name == "bare"
    assert variant.changes == {"model.skips": False, "model.norm": "none", "train.lr": 0.01}


def test_runs_count_is_variants_times_seeds(write_grid: WriteGrid, minimal: str) -> None:
    grid = load_grid(write_grid(minimal + "ablations:\n  remove: [norm, skips]\n"))
    assert runs_count(grid) == 3 * 2


def test_grid_built_in_python_expands_and_reports_without_lines() -> None:
    grid = GridConfig.model_validate(
        {
            "study": "py",
            "data": {"root": "/x"},
            "baseline": {},
            "ablations": {"swap": {"lr": [1e-3]}},
        }
    )
    with pytest.raises(
        GridError, match=r"(?s)grid 'py'.*ablations\.swap\.lr\[0\]: variant 'lr=0.001'"
    ):
        expand_variants(grid)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-4, "0.0001"),
        (3e-6, "3e-6"),
        (0.5, "0.5"),
        (16, "16"),
        (True, "true"),
        (None, "none"),
        ([32, 64], "32-64"),
        ("0.7 * dice", "0.7*dice"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_every_removal_of_a_rich_baseline_changes_it() -> None:
    baseline = Recipe.model_validate(
        {
            "model": {
                "dropout": 0.2,
                "disabled_skips": [3],
                "widths": [8, 16, 32, 64],
                "block": "residual",
                "se": True,
                "attention": True,
                "bottleneck": "aspp",
                "deep_supervision": True,
            },
            "train": {"balanced": True, "schedule": "cosine"},
            "augment": {
                "normalize": True,
                "stain_norm": "macenko",
                "ops": {op: 0.5 for op in typing.get_args(AugmentOp)},
            },
        }
    )
    removals = removals_for(baseline)
    for removal in removals:
        if removal.name == "skip-3":
            continue  # already off in this baseline
        changes = removal.changes(baseline)
        assert changes, removal.name
        assert removal.meaning
    deepest = removal_changes("deepest-level", baseline)
    assert deepest == {"model.widths": [8, 16, 32], "model.disabled_skips": []}
    with pytest.raises(ComponentError, match="already off"):
        removal_changes("skip-3", baseline)


def test_unknown_component_lists_the_valid_ones() -> None:
    with pytest.raises(
        ComponentError, match=r"unknown component 'skip-9'.*valid: skip-1, skip-2, skip-3,"
    ):
        removal_changes("skip-9", Recipe())


def test_swappable_keys_cover_every_recipe_field() -> None:
    sections = {"model": Recipe().model, "train": Recipe().train, "augment": Recipe().augment}
    fields = {
        f"{name}.{field}"
        for name, section in sections.items()
        for field in type(section).model_fields
    }
    assert set(SWAPPABLE.values()) == fields
    for alias, path in SWAPPABLE.items():
        assert resolve_key(alias) == resolve_key(path) == path
        assert allowed_values(path)
    assert "batch-double" in allowed_values("model.norm")
    assert allowed_values("train.lr") == "number > 0.0"
    with pytest.raises(ComponentError, match="did you mean 'lr'"):
        resolve_key("lrr")
