"""Expand a grid into its variants: the baseline, then each removal, swap, named variant and
factorial combination, each validated as a `Recipe` and named readably.

Names are safe as file-name parts: `baseline`, `no-skip-2`, `norm=batch`, `lr=0.0001`,
`loss=0.7*dice+0.3*jaccard`, `norm=none,loss=bce`. Duplicate names, two variants with the
same recipe and a variant equal to the baseline are errors naming their YAML keys. A
factorial combination equal to the baseline or to an earlier variant is skipped instead: a
full product naturally contains the baseline's own levels.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from ablate.config import Ablations, GridConfig, Recipe
from ablate.errors import GridError
from ablate.grid.components import ComponentError, removal_changes, resolve_key, short_key
from ablate.grid.keys import KeyPath, Locate, format_path

BASELINE = "baseline"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+*,-]*")
"""Variant names become file-name parts (`variant=<name>__seed=0.parquet`) and URI keys."""
UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._=+*,-]")
MAX_NAME_LENGTH = 120
"""Characters of a variant name as stored in file names (`*` is stored as %2A, three)."""
MAX_FACTORIAL = 1000
"""A bigger product is almost surely a typo; declare such studies in several grids."""
MAX_VARIANTS = 1000
"""Variants of one study, the baseline included: each is a Ray Tune trial."""


@dataclass(frozen=True)
class Variant:
    """One variant of a study: the baseline with `changes` applied."""

    name: str
    """'baseline', 'no-skip-2', 'norm=batch', ...; safe as a file-name part."""
    recipe: Recipe
    """The baseline with this variant's changes."""
    changes: dict[str, Any]
    """Dotted key ('model.norm') -> new value, only keys that differ; {} for the baseline."""
    source: str = BASELINE
    """The YAML key that declared it, e.g. 'ablations.swap.lr[1]'."""


@dataclass
class _Declared:
    """A variant as written in the grid, before validation."""

    path: KeyPath
    """Where it is declared; problems without a more precise key are reported here."""
    changes: dict[str, Any]
    """Dotted path -> value as written."""
    name: str | None = None
    """Fixed name (removals, named variants); None: generated from the changed values."""
    key_paths: dict[str, KeyPath] = field(default_factory=dict)
    """Dotted path -> the YAML key that set it, for precise problem locations."""
    factorial: bool = False


def expand_variants(grid: GridConfig) -> list[Variant]:
    """Every variant of `grid`, the baseline first.

    Example:
        >>> [v.name for v in expand_variants(load_grid("grids/quickstart.yaml"))][:2]
        ['baseline', 'no-skips']

    Raises:
        GridError: every problem of the ablations, each with its YAML key path and line.
    """
    # A grid from load_grid has passed these checks already (with lines); one built in Python
    # is reported by key path only.
    variants, problems = collect_variants(grid.baseline, grid.ablations, format_path)
    if problems:
        raise GridError(f"grid {grid.study!r}", problems)
    return variants


def runs_range(grid: GridConfig) -> tuple[int, int]:
    """Fewest and most runs of the study: variants x seeds, where adaptive seeds
    ({min, max}) give variants x min .. variants x max (equal for a fixed number of seeds)."""
    variants = len(expand_variants(grid))
    protocol = grid.protocol
    return variants * len(protocol.min_seed_list()), variants * len(protocol.max_seed_list())


def runs_count(grid: GridConfig) -> int:
    """Runs of the study: variants x seeds (with adaptive seeds, the most it may run)."""
    return runs_range(grid)[1]


def dump_grid(grid: GridConfig) -> str:
    """The resolved grid (extends and ${VAR} applied, defaults filled in) as YAML text.

    `load_grid` of the text gives back an equal grid.
    """
    header = "# Resolved grid: extends and ${VAR} applied, every default written out.\n"
    body = yaml.dump(grid.model_dump(mode="json"), Dumper=_GridDumper, sort_keys=False)
    return header + body


class _GridDumper(yaml.SafeDumper):
    """Block style, except lists of plain values on one line: `widths: [8, 16, 32]`."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat)


_GridDumper.add_representer(list, _represent_list)


def collect_variants(
    baseline: Recipe, ablations: Ablations, locate: Locate, check_baseline: bool = True
) -> tuple[list[Variant], list[str]]:
    """(variants, problems): the expansion, and every problem found on the way.

    `check_baseline=False` leaves the baseline's own checks out (a baseline repaired with
    defaults, whose real problems were reported already).
    """
    problems: list[str] = []
    declared = [
        *_declare_removals(baseline, ablations.remove, locate, problems),
        *_declare_swaps(ablations.swap, locate, problems),
        *_declare_named(baseline, ablations.variants, locate, problems),
        *_declare_factorial(baseline, ablations.factorial, locate, problems),
    ]
    if len(declared) + 1 > MAX_VARIANTS:
        # Counted before any is built: validating 20,000 recipes would take the time the
        # limit is there to save.
        problems.append(
            f"{locate(('ablations',))}: {len(declared) + 1} variants with the baseline, over "
            f"the limit of {MAX_VARIANTS} (MAX_VARIANTS); split the study into several grids"
        )
        return [Variant(BASELINE, baseline, {})], problems
    variants = [Variant(BASELINE, baseline, {})]
    if check_baseline:
        _check_size(baseline, locate(("baseline", "train", "image_size")), problems)
    names: dict[str, str] = {BASELINE: "the baseline"}
    recipes: dict[str, str] = {baseline.model_dump_json(): BASELINE}
    for entry in declared:
        variant = _build(baseline, entry, locate, problems)
        if variant is None:
            continue
        where = locate(entry.path)
        same = recipes.get(variant.recipe.model_dump_json())
        if same is not None and entry.factorial:
            continue  # the product contains the baseline's levels: that run exists already
        if same == BASELINE:
            problems.append(f"{where}: variant {variant.name!r} is identical to the baseline")
        elif variant.name in names:
            problems.append(
                f"{where}: duplicate variant name {variant.name!r} (also {names[variant.name]})"
            )
        elif same is not None:
            problems.append(f"{where}: variant {variant.name!r} is identical to variant {same!r}")
        elif _check_size(variant.recipe, f"{where}: variant {variant.name!r}", problems):
            names[variant.name] = where
            recipes[variant.recipe.model_dump_json()] = variant.name
            variants.append(variant)
    return variants, problems


def _check_size(recipe: Recipe, where: str, problems: list[str]) -> bool:
    """Whether the training size passes the U-Net's halvings; a problem is recorded if not.

    Each encoder level halves the input (2x2 max-pool), so a size that does not divide
    would fail every run of the study at its first batch: it is refused up front.
    """
    depth, size = recipe.model.depth, recipe.train.image_size
    multiple = 2**depth
    if size % multiple == 0:
        return True
    nearest = max(multiple, round(size / multiple) * multiple)
    problems.append(
        f"{where}: train.image_size {size} is not a multiple of {multiple} = 2**{depth} "
        f"(one halving per encoder level of model.widths {recipe.model.widths}); "
        f"use e.g. {nearest}"
    )
    return False


def _declare_removals(
    baseline: Recipe, components: list[str], locate: Locate, problems: list[str]
) -> list[_Declared]:
    declared = []
    for index, component in enumerate(components):
        path = ("ablations", "remove", index)
        try:
            changes = removal_changes(component, baseline)
        except ComponentError as error:
            problems.append(f"{locate(path)}: {error}")
            continue
        declared.append(_Declared(path, changes, name=f"no-{component}"))
    return declared


def _declare_swaps(swap: dict[str, list], locate: Locate, problems: list[str]) -> list[_Declared]:
    declared = []
    for key, values in swap.items():
        target = _resolve(key, ("ablations", "swap", key), locate, problems)
        if target is None:
            continue
        if not values:
            problems.append(f"{locate(('ablations', 'swap', key))}: no values to swap in")
        for index, value in enumerate(values):
            declared.append(_Declared(("ablations", "swap", key, index), {target: value}))
    return declared


def _declare_named(
    baseline: Recipe, named: dict[str, dict], locate: Locate, problems: list[str]
) -> list[_Declared]:
    declared = []
    for name, settings in named.items():
        path = ("ablations", "variants", name)
        problem = _name_problem(name)
        if problem:
            problems.append(f"{locate(path)}: {problem}")
            continue
        if not settings:
            problems.append(f"{locate(path)}: changes nothing (identical to the baseline)")
            continue
        entry = _Declared(path, {}, name=name)
        for key, value in settings.items():
            key_path = (*path, key)
            if key == "remove":
                entry.changes.update(_named_removals(baseline, value, key_path, locate, problems))
                continue
            target = _resolve(key, key_path, locate, problems)
            if target is not None:
                entry.changes[target] = value
                entry.key_paths[target] = key_path
        declared.append(entry)
    return declared


def _named_removals(
    baseline: Recipe, components: Any, path: KeyPath, locate: Locate, problems: list[str]
) -> dict[str, Any]:
    """`remove: [a, b]` inside a named variant: the changes of each removal, merged."""
    components = [components] if isinstance(components, str) else components
    if not isinstance(components, list) or not components:
        problems.append(f"{locate(path)}: must be a component name or a list of them")
        return {}
    changes: dict[str, Any] = {}
    for index, component in enumerate(components):
        try:
            changes.update(removal_changes(str(component), baseline))
        except ComponentError as error:
            problems.append(f"{locate((*path, index))}: {error}")
    return changes


def _declare_factorial(
    baseline: Recipe, factors: dict[str, list], locate: Locate, problems: list[str]
) -> list[_Declared]:
    """Every combination of the factors' values; each value is first checked on its own."""
    if not factors:
        return []  # the product of no factor is one empty combination: the baseline again
    targets: list[str] = []
    found = len(problems)
    for key, values in factors.items():
        path = ("ablations", "factorial", key)
        target = _resolve(key, path, locate, problems)
        if target is None:
            continue
        targets.append(target)
        if not values:
            problems.append(f"{locate(path)}: no values")
        for index, value in enumerate(values):
            try:
                _apply(baseline, {target: value})
            except ValidationError as error:
                problems += _recipe_problems(error, (*path, index), {}, locate)
    combinations = 1
    for values in factors.values():
        combinations *= len(values)
    if combinations > MAX_FACTORIAL:
        problems.append(
            f"{locate(('ablations', 'factorial'))}: {combinations} combinations "
            f"(limit {MAX_FACTORIAL}); split the study into several grids"
        )
    if len(problems) > found:
        return []
    key_paths = {
        target: ("ablations", "factorial", key)
        for target, key in zip(targets, factors, strict=True)
    }
    return [
        _Declared(
            ("ablations", "factorial"),
            dict(zip(targets, combo, strict=True)),
            key_paths=key_paths,
            factorial=True,
        )
        for combo in itertools.product(*factors.values())
    ]


def _resolve(key: str, path: KeyPath, locate: Locate, problems: list[str]) -> str | None:
    """The dotted path of a grid key, or None after recording why it is unknown."""
    try:
        return resolve_key(key)
    except ComponentError as error:
        problems.append(f"{locate(path)}: {error}")
        return None


def _build(
    baseline: Recipe, entry: _Declared, locate: Locate, problems: list[str]
) -> Variant | None:
    """The validated variant of a declaration; None after recording its problems."""
    try:
        recipe = _apply(baseline, entry.changes)
    except ValidationError as error:
        problems += _recipe_problems(error, entry.path, entry.key_paths, locate)
        return None
    values = {path: read_value(recipe, path) for path in entry.changes}
    name = entry.name or ",".join(
        f"{short_key(path)}={format_value(value)}" for path, value in values.items()
    )
    # One '_' per unsafe run; '__' would blur the store's `variant=<v>__seed=<s>` file names.
    name = re.sub("_{2,}", "_", UNSAFE_CHARACTERS.sub("_", name))
    if stored_length(name) > MAX_NAME_LENGTH:
        problems.append(
            f"{locate(entry.path)}: variant name {name[:40]}... is over {MAX_NAME_LENGTH} "
            "characters; declare it under ablations.variants with a short name"
        )
        return None
    changes = {path: value for path, value in values.items() if value != read_value(baseline, path)}
    return Variant(name, recipe, changes, source=format_path(entry.path))


def _apply(baseline: Recipe, changes: dict[str, Any]) -> Recipe:
    """`baseline` with dotted-path changes applied, validated (raises ValidationError)."""
    data = baseline.model_dump()
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = data
        for part in parents:
            target = target[part]
        target[leaf] = copy.deepcopy(value)
    return Recipe.model_validate(data)


def read_value(recipe: Recipe, path: str) -> Any:
    """The value at a dotted path of a recipe; None for an absent mapping key."""
    value: Any = recipe
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part)
    return value


def _recipe_problems(
    error: ValidationError, path: KeyPath, key_paths: dict[str, KeyPath], locate: Locate
) -> list[str]:
    """Problems of a variant's recipe, each at the YAML key that set the failing value."""
    problems = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"] if part != "[key]")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] != "value_error" and not isinstance(item.get("input"), dict | list):
            message += f" (got {item.get('input')!r})"
        owner = next((key for key in key_paths if loc == key or loc.startswith(f"{key}.")), None)
        where = key_paths[owner] if owner else path
        problems.append(f"{locate(where)}: {loc}: {message}")
    return problems


def format_value(value: Any) -> str:
    """A value as it appears in a variant name: 0.0001, 3e-6, true, none, 32-64-128."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, float):
        return re.sub(
            r"e([+-])0*(\d)", lambda m: f"e{m.group(1).replace('+', '')}{m.group(2)}", repr(value)
        )
    if isinstance(value, list | tuple):
        return "-".join(format_value(item) for item in value)
    if isinstance(value, dict):
        return "+".join(f"{key}-{format_value(item)}" for key, item in value.items()) or "none"
    return "".join(str(value).split())


def stored_length(name: str) -> int:
    """Characters of a variant name in the store's file names, where `*` becomes %2A."""
    return len(name) + 2 * name.count("*")


def _name_problem(name: str) -> str | None:
    """Why a user-chosen variant name cannot be used, or None."""
    if name == BASELINE:
        return "'baseline' is reserved for the baseline itself"
    if stored_length(name) > MAX_NAME_LENGTH:
        return (
            f"variant name {name[:40]!r}... is over {MAX_NAME_LENGTH} characters "
            "(each * counts 3: it is stored as %2A)"
        )
    # fullmatch: `$` would also match before a final newline ("tiny\n").
    if not SAFE_NAME.fullmatch(name) or "__" in name:
        return (
            f"variant name {name!r} is not safe as a file name; "
            "use letters, digits and . _ - = + , * (starting with a letter or digit, no '__')"
        )
    return None
