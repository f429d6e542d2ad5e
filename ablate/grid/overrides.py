"""`--set KEY=VALUE`: one key of a grid changed from the command line (or from Python).

A key is a dotted path into the grid (`baseline.train.epochs`, `resources.gpu`,
`ablations.swap.lr`). The path is read with the grid's schema, so it works for any key the
config classes declare, present or future, without a list of keys here: each part names a
field of a config section until the path reaches a free-form mapping, whose key is the rest
of the path (`ablations.swap.train.lr` is the swap of `train.lr`; `ablations.variants.tiny.
model.widths` sets `model.widths` of the named variant `tiny`).

Values are YAML (a scalar, or a flow list or mapping: `[1e-4, 1e-3]`, `{rotate: 0.5}`),
read by the grid loader with the grid file's limits (`ablate.grid.load.parse_overrides`).
Overrides are applied after `extends` and `${VAR}` and before validation, so a misspelt key
or a wrong value is reported like one in the file, naming the `--set` instead of a line.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel

from ablate.config import GridConfig, Recipe
from ablate.grid.keys import EXTENDS, MAX_SHOWN, KeyPath, format_path, shown

OPTION = "--set"


@dataclass(frozen=True)
class Override:
    """One `--set KEY=VALUE`, its value already read as YAML."""

    text: str
    """KEY=VALUE as given."""
    key: str
    """The dotted key, stripped of surrounding blanks."""
    value: Any

    @property
    def label(self) -> str:
        """How messages name it: `--set baseline.train.epochs=2` (cut and quoted when long
        or holding a control character, so a message stays on one line)."""
        return label(self.text)


def label(text: str) -> str:
    """`--set KEY=VALUE` for a message."""
    plain = text.isprintable() and len(text) <= MAX_SHOWN
    return f"{OPTION} {text if plain else shown(text)}"


def split_override(text: str) -> tuple[str, str] | str:
    """(key, value text) of `KEY=VALUE`, or the problem with it (a sentence).

    Example:
        >>> split_override("baseline.train.epochs=2")
        ('baseline.train.epochs', '2')
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals:
        return "not KEY=VALUE (no '='); e.g. --set baseline.train.epochs=2"
    if not key:
        return "the key before '=' is empty"
    if any(not part.strip() for part in key.split(".")):
        return f"the key {shown(key)} has an empty part between dots"
    if not value.strip():
        # null does not remove a key: it sets it to null, which only optional keys accept.
        return (
            "no value after '=' (null sets a key to null, for keys that accept it: "
            "baseline.train.patience=null)"
        )
    return key, value


def override_path(key: str, single_run: bool) -> tuple[KeyPath, str | None]:
    """The grid key path `key` stands for, and a hint when it cannot be a grid key.

    In a single-run config, `train.epochs` is the baseline's (`baseline.train.epochs` is
    accepted too); in a grid, a top-level `train`, `model` or `augment` is not a key. Nor is
    `extends`: the loader follows it before any override applies.
    """
    parts = [part.strip() for part in key.split(".")]
    if parts[0] == EXTENDS:  # resolved when the file is read, before any override applies
        return tuple(parts), (
            f"{EXTENDS!r} cannot be set with {OPTION}: the extended file is read with the "
            f"grid, before overrides apply; edit the file's {EXTENDS}: line instead"
        )
    recipe_key = parts[0] in Recipe.model_fields and parts[0] not in GridConfig.model_fields
    if recipe_key and single_run:
        parts = ["baseline", *parts]
    elif recipe_key:
        return tuple(parts), (
            f"{parts[0]!r} is not a top-level key of a grid (did you mean "
            f"'baseline.{'.'.join(parts)}'?)"
        )
    return _schema_path(parts), None


def _schema_path(parts: list[str]) -> KeyPath:
    """Split `parts` as the schema reads them: fields of sections one by one, then the key of
    a free-form mapping (`dict[str, list]`) as the rest of the path joined by dots."""
    path: list[str] = []
    annotation: Any = GridConfig
    for index, part in enumerate(parts):
        section = _section(annotation)
        if section is not None:
            path.append(part)
            field = section.model_fields.get(part)
            if field is None:  # an unknown key: validation names it, with a close match
                return (*path, *parts[index + 1 :])
            annotation = field.annotation
            continue
        values = _mapping_values(annotation)
        if values is None:  # below a plain value: validation says what the key takes
            return (*path, *parts[index:])
        if _section(values) is None and _mapping_values(values) is None:
            return (*path, ".".join(parts[index:]))  # the mapping's key, dots and all
        path.append(part)
        annotation = values
    return tuple(path)


def _members(annotation: Any) -> list[Any]:
    """`annotation` without Annotated and Optional wrappers: the types a value may have."""
    if typing.get_origin(annotation) is Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    return [annotation]


def _section(annotation: Any) -> type[BaseModel] | None:
    """The config class a field holds (`X`, `X | None`); None when it is not a section."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _mapping_values(annotation: Any) -> Any | None:
    """The value type of a mapping field (`dict[K, V]` -> V, bare `dict` -> Any); None when
    the field is not a mapping."""
    for member in _members(annotation):
        if member is dict:
            return Any
        if typing.get_origin(member) is dict:
            args = typing.get_args(member)
            return args[1] if len(args) == 2 else Any
    return None


def apply_overrides(
    data: dict, overrides: list[Override], single_run: bool
) -> tuple[dict, dict[KeyPath, str], list[str]]:
    """`data` (a grid's mapping, extends and ${VAR} resolved) with every override set.

    Returns:
        The new mapping (`data` is not changed), the label of each key path set (for
        messages), and the problems of overrides that could not be set.
    """
    data = copy.deepcopy(data)
    labels: dict[KeyPath, str] = {}
    problems: list[str] = []
    seen: dict[KeyPath, str] = {}
    for override in overrides:
        path, hint = override_path(override.key, single_run)
        if hint is not None:
            problems.append(f"{override.label}: {hint}")
            continue
        if path in seen:
            problems.append(f"{override.label}: {format_path(path)} is also set by {seen[path]}")
            continue
        problem = _set(data, path, copy.deepcopy(override.value))
        if problem is not None:
            problems.append(f"{override.label}: {problem}")
            continue
        seen[path] = labels[path] = override.label
    return data, labels, problems


def _set(data: dict, path: KeyPath, value: Any) -> str | None:
    """Set `value` at `path` in `data`, creating absent (or null) mappings on the way; the
    problem when a value on the way is not a mapping."""
    node = data
    for depth, part in enumerate(path[:-1]):
        current = node.get(part)
        if current is None:
            node[part] = current = {}
        if not isinstance(current, dict):
            where = format_path(path[: depth + 1])
            return (
                f"{where} is {shown(current)} in the grid, not a mapping of keys; set it "
                f"whole instead: {OPTION} {where}=..."
            )
        node = current
    node[path[-1]] = value
    return None


def label_of(labels: dict[KeyPath, str], path: KeyPath) -> str | None:
    """The label of the override that set `path` or a key above it; None when none did."""
    for length in range(len(path), 0, -1):
        if path[:length] in labels:
            return labels[path[:length]]
    return None


def labels_below(labels: dict[KeyPath, str], path: KeyPath) -> str | None:
    """The labels of overrides that set keys below `path` (a section's own check may fail
    because of them), joined; None when none did."""
    below = [text for key, text in labels.items() if key[: len(path)] == path]
    if not below:
        return None
    return ", ".join(below[:3]) + (", ..." if len(below) > 3 else "")
