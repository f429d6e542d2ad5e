"""Read a grid YAML file into a validated `GridConfig`, reporting every problem at once.

Loading keeps the line of every key (from the YAML node tree), resolves `extends:` chains
(mappings merge key by key, lists and scalars replace), substitutes `${VAR}` and
`${VAR:-default}` in string values from the environment, validates against the schema in
`ablate.config`, then checks the ablations. Each problem reads `KEY.PATH (line N): message`;
all of them are raised together in one `GridError`. YAML is loaded with the safe loader only:
a grid is data, nothing in it is ever evaluated.

Each file is parsed once, within limits (size, nesting, aliases, values) checked on the YAML
node tree before any Python object is built from it, so a hostile file is refused in
milliseconds: an alias bomb is measured, never expanded.

A single-run config (data, protocol, model, train, augment at the top level; no study,
baseline or ablations) loads as the one-variant grid it stands for, named after its file.

Overrides (`--set KEY=VALUE`, `ablate.grid.overrides`) are applied after `extends` and
`${VAR}`, before validation; a problem they cause names the `--set` instead of a line. A grid
or run config built in Python loads the same way, checked like a file.
"""

from __future__ import annotations

import ast
import copy
import difflib
import os
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ablate.config import (
    CONTROL_CHARACTERS,
    MAX_STUDY_NAME,
    Ablations,
    GridConfig,
    Recipe,
    RunConfig,
)
from ablate.errors import GridError
from ablate.grid.expand import Variant, collect_variants
from ablate.grid.keys import EXTENDS, MAX_SHOWN, KeyPath, Locate, format_path, shown
from ablate.grid.overrides import (
    Override,
    apply_overrides,
    label,
    label_of,
    labels_below,
    split_override,
)
from ablate.grid.yaml_file import (
    MAX_GRID_BYTES,
    BoundedLoader,
    Location,
    OverLimit,
    check_expansion,
    read_yaml,
    unprintable_problem,
    yaml_problem,
)

GRID_ONLY_KEYS = ("study", "baseline", "ablations")
"""Keys that only a grid has: a file with none of them is a single-run config."""
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MAX_EXTENDS = 8
"""Files in one `extends:` chain, the grid itself included."""
MAX_PROBLEMS_SHOWN = 50
"""Problems listed in one message; the rest are counted."""

__all__ = ["GridSource", "format_path", "grid_source", "load_grid", "load_grid_variants"]

GridSource = str | Path | GridConfig | RunConfig
"""A grid file (or single-run config file), or a grid or run config built in Python."""


@dataclass(frozen=True)
class GridOrigin:
    """Where a loaded grid came from: its file and the location of every key in it."""

    path: Path | None
    """The grid file as the user named it; None for a grid built in Python."""
    lines: dict[KeyPath, Location]
    """Key path -> location, extended files included (an override wins)."""
    single_run: bool = False
    """A single-run config: its sections were moved under `baseline`, shown as written."""
    overridden: dict[KeyPath, str] = field(default_factory=dict)
    """Key path -> the `--set` that set it."""
    environment: dict[str, str] = field(default_factory=dict)
    """Each value `${VAR}` gave a string -> the string as written (`${VAR}`): messages show
    the latter, never the environment."""

    def locate(self, path: KeyPath) -> str:
        """'baseline.train.lr (line 12)', '(base.yaml line 3)' when inherited, or
        '(--set baseline.train.lr=2)' when an override set it."""
        written = path[1:] if self.single_run and path[:1] == ("baseline",) else path
        text = format_path(written)
        setter = label_of(self.overridden, tuple(path))
        if setter is not None:
            return f"{text} ({setter})"
        line = self._line(tuple(path))
        below = labels_below(self.overridden, tuple(path))
        if line and below:  # the file's key, failing a check because of overrides below it
            return f"{text} ({line}, with {below})"
        return f"{text} ({line or below})" if line or below else text

    def _line(self, path: KeyPath) -> str | None:
        """'line 12' or 'base.yaml line 3' (inherited); None when the key is not written."""
        location = self.lines.get(path)
        if location is None or self.path is None:
            return None
        if location.file == self.path.resolve():
            return f"line {location.line}"
        where = os.path.relpath(location.file, self.path.resolve().parent)
        return f"{where} line {location.line}"


def load_grid(grid: GridSource, overrides: Sequence[str] = ()) -> GridConfig:
    """Load, resolve and validate a grid file, with `--set KEY=VALUE` overrides applied.

    Args:
        grid: a grid file or single-run config file; or a `GridConfig` / `RunConfig` built
            in Python, checked like a file.
        overrides: `KEY=VALUE` strings, as given to `--set` (see `ablate.grid.overrides`).

    Example:
        >>> grid = load_grid("grids/quickstart.yaml", overrides=["protocol.seeds=1"])
        >>> grid.study, grid.protocol.seed_list()
        ('quickstart', [0])

    Raises:
        GridError: every problem in the file and the overrides, each with its YAML key path
            and line (or the `--set` that caused it).
    """
    return load_grid_variants(grid, overrides)[0]


def load_grid_variants(
    grid: GridSource, overrides: Sequence[str] = ()
) -> tuple[GridConfig, list[Variant]]:
    """`load_grid` and the grid's variants (baseline first), from one reading of the file.

    Raises:
        GridError: every problem in the file and the overrides, each with its YAML key path
            and line (or the `--set` that caused it).
    """
    source = grid_source(grid)
    parsed, problems = parse_overrides(overrides)
    if problems:  # a malformed --set is refused before the file is read
        raise _grid_error(source, problems)
    data, origin, problems = _grid_data(grid)
    data, labels, override_problems = apply_overrides(data, parsed, origin.single_run)
    origin = replace(origin, overridden=labels)
    return _validated(data, origin, [*problems, *override_problems], source)


def grid_source(grid: GridSource) -> str:
    """How messages name a grid: its file, or `grid 'name'` for one built in Python."""
    if isinstance(grid, GridConfig):
        return f"grid {grid.study!r}"
    if isinstance(grid, RunConfig):
        return "run config"
    return str(grid)


def _grid_data(grid: GridSource) -> tuple[dict, GridOrigin, list[str]]:
    """The grid's mapping (extends and ${VAR} resolved), its origin, and the problems found."""
    if isinstance(grid, GridConfig):
        return grid.model_dump(mode="json"), GridOrigin(None, {}), []
    if isinstance(grid, RunConfig):
        data, lines = _run_config_as_grid(grid.model_dump(mode="json"), {}, "run")
        return data, GridOrigin(None, lines, single_run=True), []
    path = Path(grid)
    data, lines = _resolve_extends(path, ())
    single_run = not any(key in data for key in GRID_ONLY_KEYS)
    if single_run:
        data, lines = _run_config_as_grid(data, lines, path.stem)
    problems: list[str] = []
    origin = GridOrigin(path, lines, single_run)
    data = _substitute_env(data, (), origin.locate, problems, origin.environment)
    return data, origin, problems


def _validated(
    data: dict, origin: GridOrigin, problems: list[str], source: str
) -> tuple[GridConfig, list[Variant]]:
    """Validate the resolved mapping and expand its variants; every problem raised at once."""
    try:
        grid = GridConfig.model_validate(data)
    except ValidationError as error:
        problems += schema_problems(error, data, origin.locate)
        problems += _partial_ablation_problems(data, origin.locate)
        raise _grid_error(source, problems, origin) from None
    variants, expansion = collect_variants(grid.baseline, grid.ablations, origin.locate)
    problems += expansion
    if not expansion:  # a variant that failed to expand is not "unknown" to pruning
        problems += _pruning_problems(grid, variants, origin.locate)
    if problems:
        raise _grid_error(source, problems, origin)
    return grid, variants


def _grid_error(source: str, problems: list[str], origin: GridOrigin | None = None) -> GridError:
    """A GridError listing at most MAX_PROBLEMS_SHOWN problems (and how many more), none of
    them showing a value that came from the environment."""
    if origin is not None:
        problems = [_hide_environment(problem, origin.environment) for problem in problems]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        hidden = len(problems) - MAX_PROBLEMS_SHOWN
        problems = [*problems[:MAX_PROBLEMS_SHOWN], f"... and {hidden} more problem(s)"]
    return GridError(source, problems)


def parse_overrides(texts: Sequence[str]) -> tuple[list[Override], list[str]]:
    """Each `KEY=VALUE` split and its value read as YAML, within a grid file's limits.

    Returns:
        The overrides, and one problem per malformed one (naming it).
    """
    overrides: list[Override] = []
    problems: list[str] = []
    for text in texts:
        split = split_override(text)
        if isinstance(split, str):
            problems.append(f"{label(text)}: {split}")
            continue
        key, raw = split
        value, problem = _override_value(raw)
        if problem is not None:
            problems.append(f"{label(text)}: {problem}")
            continue
        overrides.append(Override(text, key, value))
    return overrides, problems


def _override_value(raw: str) -> tuple[Any, str | None]:
    """(value, None) of an override's YAML text, or (None, problem): a scalar or a flow list
    or mapping, read by the grid file's bounded loader."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_GRID_BYTES:
        return None, f"the value is over {MAX_GRID_BYTES:,} bytes, the limit of a grid file"
    problem = unprintable_problem(raw)
    if problem:
        return None, _one_line(problem, raw)
    loader = BoundedLoader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, "the value is empty once read as YAML ('#' starts a comment: quote it)"
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
            return None, (
                "a value is a YAML scalar or a flow list or mapping ([a, b], {k: v}); quote "
                "text holding ': ' or starting with '- '"
            )
        check_expansion(node)
        return loader.construct_document(node), None
    except OverLimit as error:
        return None, f"the value is beyond a limit of a grid file: {_one_line(error, raw)}"
    except yaml.YAMLError as error:
        return None, f"cannot read the value: {_one_line(yaml_problem(error), raw)}"
    finally:
        loader.dispose()


def _one_line(problem: object, raw: str) -> str:
    """A YAML problem of a one-line value without its 'line 1' (there is no other line)."""
    text = str(problem)
    return text.replace("line 1, column", "column", 1) if "\n" not in raw else text


def _pruning_problems(grid: GridConfig, variants: list[Variant], locate: Locate) -> list[str]:
    """pruning.variants must name variants of the grid: an unknown one would make `run`
    analyse nothing and `prune` fail, long after the grid was accepted."""
    if grid.pruning is None or grid.pruning.variants is None:
        return []
    names = [variant.name for variant in variants]
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    problems = []
    for index, name in enumerate(grid.pruning.variants):
        if name in names:
            continue
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(
            f"{locate(('pruning', 'variants', index))}: no variant named {name!r}{hint}; "
            f"variants: {shown}"
        )
    return problems


def _run_config_as_grid(
    data: dict, lines: dict[KeyPath, Location], stem: str
) -> tuple[dict, dict[KeyPath, Location]]:
    """A single-run config as a grid: its model/train/augment sections become the baseline
    and the study is named after the file's `stem` (`ablate train run.yaml` needs no grid
    keys)."""
    recipe = tuple(Recipe.model_fields)
    grid = {key: value for key, value in data.items() if key not in recipe}
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).lstrip("-_.")[:MAX_STUDY_NAME]
    grid["study"] = name or "run"
    grid["baseline"] = {key: data[key] for key in recipe if key in data}
    moved = {
        (("baseline", *key) if key and key[0] in recipe else key): location
        for key, location in lines.items()
    }
    return grid, moved


def _resolve_extends(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[KeyPath, Location]]:
    """The file's mapping merged over the chain of files it extends, with key locations."""
    data, lines = read_yaml(path)
    if EXTENDS not in data:
        return data, lines
    reference = data.pop(EXTENDS)
    where = f"{EXTENDS} (line {lines[(EXTENDS,)].line})"
    here = path.resolve()
    parent = _extended_file(path, reference, where)
    if parent in (*chain, here):
        cycle = " -> ".join(item.name for item in (*chain, here, parent))
        raise GridError(str(path), [f"{where}: extends cycle: {cycle}"])
    if len(chain) + 2 > MAX_EXTENDS:
        raise GridError(
            str(path),
            [f"{where}: more than {MAX_EXTENDS} files in the extends chain (MAX_EXTENDS)"],
        )
    base, base_lines = _resolve_extends(parent, (*chain, here))
    return deep_merge(base, data), {**base_lines, **lines}


def _extended_file(path: Path, reference: Any, where: str) -> Path:
    """The grid file `extends:` names, relative to `path`'s folder and inside it (a symlink
    or `..` out of it is refused before anything outside is opened); GridError if unusable."""
    if not isinstance(reference, str) or not reference.strip():
        raise GridError(
            str(path), [f"{where}: must be a file name relative to this file, got {reference!r}"]
        )
    if CONTROL_CHARACTERS.search(reference):
        raise GridError(str(path), [f"{where}: contains a control character: {reference!r}"])
    if os.path.isabs(reference) or reference.startswith("~"):
        raise GridError(
            str(path),
            [f"{where}: must be a path relative to this file's folder, got {reference!r}"],
        )
    try:
        folder = path.parent.resolve()
        parent = (folder / reference).resolve()
        if not parent.is_relative_to(folder):  # never opened, so never shown in a message
            raise GridError(
                str(path),
                [
                    f"{where}: {reference!r} leads out of this file's folder ('..' or a "
                    "symlink); the extended file must sit in the folder or below it"
                ],
            )
        if parent.is_dir():
            raise GridError(
                str(path), [f"{where}: {reference!r} is a folder, not a grid file ({parent})"]
            )
        if not parent.exists():
            raise GridError(
                str(path),
                [f"{where}: extended file {reference!r} not found (looked for {parent})"],
            )
        if not parent.is_file():  # a FIFO would block the read, a device never end it
            raise GridError(
                str(path), [f"{where}: {reference!r} is not a file (a pipe, socket or device)"]
            )
    except (OSError, RuntimeError) as error:  # a name too long, a symlink loop
        raise GridError(str(path), [f"{where}: cannot open {reference!r}: {error}"]) from None
    return parent


def deep_merge(base: dict, override: dict) -> dict:
    """`override` over `base`: mappings merge key by key; lists and scalars replace.

    Example:
        >>> deep_merge({"a": {"x": 1, "y": [1]}}, {"a": {"y": [2]}})
        {'a': {'x': 1, 'y': [2]}}
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _substitute_env(
    value: Any, path: KeyPath, locate: Locate, problems: list[str], environment: dict[str, str]
) -> Any:
    """`value` with `${VAR}` / `${VAR:-default}` replaced in every string; unset is a problem.
    Each string that changed is recorded in `environment` (its new value -> as written)."""
    if isinstance(value, dict):
        return {
            key: _substitute_env(item, (*path, key), locate, problems, environment)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute_env(item, (*path, index), locate, problems, environment)
            for index, item in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        current = os.environ.get(name)
        if default is not None and not current:
            return default
        if current is None:
            problems.append(f"{locate(path)}: environment variable {name} is not set")
            return match.group(0)
        return current

    substituted = ENV_PATTERN.sub(replace, value)
    if substituted != value:
        environment[substituted] = value
    return substituted


QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
"""A string as repr() writes it, as every message quotes a value."""
MIN_HIDDEN = 8
"""Characters of a quoted part of an environment value that a message may not show (a
shorter part, a valid name say, is shown unless it is the whole value)."""


def _hide_environment(problem: str, environment: dict[str, str]) -> str:
    """`problem` with every quoted value that came from `${VAR}` (whole, cut as `shown` cuts
    it, or a long part of it) shown as `the value of ${VAR}`: messages never echo the
    environment. Each quote is tried as an opening one: an apostrophe in the text before a
    value must not pair with the value's opening quote."""
    shown_text, position = [], 0
    while environment and position < len(problem):
        found = _environment_echo(problem, position, environment)
        if found is None:
            shown_text.append(problem[position])
            position += 1
            continue
        end, written = found
        if len(written) > MAX_SHOWN:  # its variables only: the text around them is long
            written = " ".join(
                dict.fromkeys(item.group() for item in ENV_PATTERN.finditer(written))
            )
        shown_text.append(f"the value of {written}")
        position = end
    return "".join(shown_text) + problem[position:]


def _environment_echo(
    problem: str, start: int, environment: dict[str, str]
) -> tuple[int, str] | None:
    """(end, value as written) when a quoted environment value starts at `start`."""
    if problem[start] not in "'\"":
        return None
    for value, written in environment.items():
        cut = repr(value)[:MAX_SHOWN]  # how `shown` cuts a long value (no closing quote)
        if len(repr(value)) > MAX_SHOWN and problem.startswith(cut, start):
            return start + len(cut), written
    quoted = QUOTED.match(problem, start)
    if quoted is None:
        return None
    try:
        text = ast.literal_eval(quoted.group())
    except (ValueError, SyntaxError):
        return None
    for value, written in environment.items():
        if text and (text == value or (len(text) >= MIN_HIDDEN and text in value)):
            return quoted.end(), written
    return None


def schema_problems(error: ValidationError, data: Any, locate: Locate) -> list[str]:
    """One 'KEY.PATH (line N): message' per failing key of `data` (GridConfig-shaped)."""
    grouped: dict[KeyPath, list[str]] = {}
    for item in error.errors():
        path = data_path(item["loc"], item["type"], data)
        grouped.setdefault(path, []).append(_message(item, path))
    return [
        f"{locate(path)}: {' or '.join(dict.fromkeys(messages))}"
        for path, messages in grouped.items()
    ]


def data_path(loc: tuple, error_type: str, data: Any) -> KeyPath:
    """The key path of a pydantic error location, without union tags such as 'list[int]'."""
    path: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            current = current[part]
        elif isinstance(current, dict) and error_type == "missing" and position == len(loc) - 1:
            current = None
        else:
            continue  # a union member tag or '[key]': not a key of the file
        path.append(part)
    return tuple(path)


def _message(item: dict, path: KeyPath) -> str:
    """A pydantic error as a sentence: unknown keys get a close match and the valid keys."""
    kind = item["type"]
    if kind == "extra_forbidden":
        return _unknown_key(str(path[-1]), fields_at(path[:-1]))
    if kind == "missing":
        return "required, but missing"
    message = item["msg"].removeprefix("Value error, ")
    if "[key]" in item["loc"]:
        return f"invalid key {path[-1]!r}: {message}"
    value = item.get("input")
    if kind != "value_error" and (value is None or isinstance(value, str | int | float | bool)):
        message += f" (got {shown(value)})"
    return message


def _unknown_key(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {shown(key)}{hint}; valid keys here: {', '.join(valid)}"


def fields_at(path: KeyPath, root: type[BaseModel] = GridConfig) -> list[str]:
    """The keys the schema accepts at `path` (a mapping section); [] when it is not a section."""
    model: type[BaseModel] = root
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        section = _section_model(info.annotation) if info is not None else None
        if section is None:
            return []
        model = section
    extra = [EXTENDS] if model is GridConfig else []
    return [*model.model_fields, *extra]


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config class behind `X`, `X | None` or a tagged union holding one (protocol.seeds'
    {min, max}); None when the field is not a section."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for candidate in typing.get_args(annotation):
        found = _section_model(candidate)
        if found is not None:
            return found
    return None


def _partial_ablation_problems(data: dict, locate: Locate) -> list[str]:
    """Ablation problems of a grid whose schema failed elsewhere (so all are reported at once).

    An invalid baseline is checked with its invalid keys at their defaults, so a misspelt
    component is not hidden behind a wrong learning rate.
    """
    baseline = _lenient_recipe(data.get("baseline"))
    try:
        ablations = Ablations.model_validate(data.get("ablations") or {})
    except ValidationError:
        return []  # already reported by the schema validation
    if baseline is None:
        return []
    return collect_variants(baseline, ablations, locate, check_baseline=False)[1]


def _lenient_recipe(section: Any) -> Recipe | None:
    """The baseline with every key that fails validation left out (its default used instead);
    None when it is not a mapping or cannot be repaired that way."""
    if not isinstance(section, dict):
        return None
    section = copy.deepcopy(section)
    while True:
        try:
            return Recipe.model_validate(section)
        except ValidationError as error:
            if not any(_drop_key(section, item["loc"]) for item in error.errors()):
                return None


def _drop_key(mapping: dict, loc: tuple) -> bool:
    """Delete the deepest mapping key on `loc`; False when there is none to delete."""
    parent, key = None, None
    node: Any = mapping
    for part in loc:
        if not (isinstance(node, dict) and isinstance(part, str) and part in node):
            break
        parent, key, node = node, part, node[part]
    if parent is None:
        return False
    del parent[key]
    return True
