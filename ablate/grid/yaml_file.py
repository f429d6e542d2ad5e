"""A grid's YAML file read within limits, with the line of every key.

Each file is parsed once: `BoundedLoader` (PyYAML's safe loader) stops composing the node tree
at the depth, alias and value limits, `check_expansion` measures the tree with its aliases
followed (each node once: an alias bomb is refused unexpanded), the key lines are collected,
and only then are Python objects built. The README lists the limits ("Limits").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import GridError
from ablate.grid.keys import KeyPath, format_path

INT_TAG = "tag:yaml.org,2002:int"

# Limits of a grid file (the README lists them under "Limits").
MAX_GRID_BYTES = 1 << 20
"""Size of one grid file: 1 MiB (the shipped grids are about 2 KB)."""
MAX_YAML_DEPTH = 32
"""Nesting of mappings and lists, aliases followed (a grid needs about 5)."""
MAX_YAML_ALIASES = 100
"""`*name` references in one file."""
MAX_YAML_VALUES = 20_000
"""Keys, values and list items of one file, counted with every alias expanded."""
MAX_NUMBER_CHARS = 100
"""Characters of one integer literal: Python's conversion of longer ones is slow, then fails."""


@dataclass(frozen=True)
class Location:
    """Where a key is written: a file (absolute) and a 1-based line."""

    file: Path
    line: int


# What YAML 1.1 lets a document hold (PyYAML's reader refuses the rest when it starts):
# tab, line breaks, printable ASCII, NEL and the printable Unicode planes.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def unprintable_problem(text: str) -> str | None:
    """'line 2, column 5: character U+0007 ...' for the first character YAML does not allow
    (a control character, say), None when there is none."""
    found = _UNPRINTABLE.search(text)
    if found is None:
        return None
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    code = f"U+{ord(found.group()):04X}"
    return (
        f"line {line}, column {column}: character {code} is not allowed in YAML (a control "
        "or other non-printable character)"
    )


def read_yaml(path: Path) -> tuple[dict, dict[KeyPath, Location]]:
    """One YAML file as a mapping plus the location of each key; GridError if unusable.

    The text is parsed once: the node tree is composed within the limits, measured with its
    aliases followed, its key lines collected, and only then turned into Python objects.
    """
    text = read_text(path)
    problem = unprintable_problem(text)
    if problem:
        raise GridError(str(path), [problem])
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise GridError(
                str(path), ["the file is empty: a grid needs at least study, data and baseline"]
            )
        check_expansion(node)
        lines: dict[KeyPath, Location] = {}
        problems: list[str] = []
        collect_lines(node, (), path.resolve(), lines, problems)
        if problems:
            raise GridError(str(path), problems)
        data = loader.construct_document(node)
    except OverLimit as error:
        raise GridError(str(path), [str(error)]) from None
    except yaml.YAMLError as error:
        raise GridError(str(path), [yaml_problem(error)]) from None
    finally:
        loader.dispose()
    if data is None:
        raise GridError(
            str(path), ["the file is empty: a grid needs at least study, data and baseline"]
        )
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise GridError(
            str(path), [f"line 1: the top level must be a mapping of sections, got a {kind}"]
        )
    return data, lines


def read_text(path: Path) -> str:
    """The text of a grid file of at most MAX_GRID_BYTES; GridError when it cannot be read."""
    try:
        if not path.exists():
            raise GridError(str(path), ["file not found"])
        if not path.is_file():
            raise GridError(str(path), ["not a file"])
        with path.open("rb") as handle:
            raw = handle.read(MAX_GRID_BYTES + 1)  # never more, whatever the file claims
        if len(raw) > MAX_GRID_BYTES:
            raise GridError(
                str(path),
                [
                    f"the file is over {MAX_GRID_BYTES:,} bytes (1 MiB), the limit of a grid "
                    "file (MAX_GRID_BYTES)"
                ],
            )
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GridError(str(path), [f"cannot read the file: {error}"]) from None


class OverLimit(Exception):
    """A YAML document beyond one of the limits; the message names the line and the limit."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        where = f"line {mark.line + 1}: " if mark is not None else ""
        super().__init__(where + message)


class BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing a document beyond the limits while it composes the node
    tree, before any Python object exists. Composing is PyYAML's only recursive step, so
    the depth limit here also keeps 600-deep lists from exhausting Python's stack."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._values = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise OverLimit(
                    event.start_mark,
                    f"more than {MAX_YAML_ALIASES} aliases (*name) in the file, the limit "
                    "(MAX_YAML_ALIASES)",
                )
            return super().compose_node(parent, index)
        self._values += 1
        if self._values > MAX_YAML_VALUES:
            raise OverLimit(event.start_mark, _too_many())
        if self._depth >= MAX_YAML_DEPTH:
            raise OverLimit(event.start_mark, _too_deep())
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value Python cannot convert (a 13th month, a 5000-digit number) becomes a YAML
        error at its line instead of a Python exception."""
        if node.tag == INT_TAG and len(node.value) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a number written with {len(node.value):,} characters; the limit is "
                f"{MAX_NUMBER_CHARS} (MAX_NUMBER_CHARS)",
                node.start_mark,
            )
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {error}", node.start_mark
            ) from None


def _too_many() -> str:
    return (
        f"more than {MAX_YAML_VALUES:,} keys, values and list items (aliases expanded), the "
        "limit of a grid file (MAX_YAML_VALUES)"
    )


def _too_deep() -> str:
    return (
        f"nested deeper than {MAX_YAML_DEPTH} levels of mappings and lists (aliases "
        "followed), the limit of a grid file (MAX_YAML_DEPTH)"
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_expansion(root: yaml.Node) -> None:
    """Refuse a node tree that its aliases blow up, measured on the node graph with each
    node visited once: a 500-byte alias bomb is refused without being expanded.

    Raises:
        OverLimit: more than MAX_YAML_VALUES values or MAX_YAML_DEPTH levels once aliases
            are followed, or an alias inside the node it names (a recursive structure).
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height), aliases expanded
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise OverLimit(
                node.start_mark,
                "an alias refers to a node that contains it: a recursive structure, which "
                "no grid value can be",
            )
        if key not in measured:
            if depth > MAX_YAML_DEPTH:
                raise OverLimit(node.start_mark, _too_deep())
            open_nodes.add(key)
            values, height = 1, 1
            for child in _children(node):
                child_values, child_height = measure(child, depth + 1)
                values, height = values + child_values, max(height, child_height + 1)
                if values > MAX_YAML_VALUES:
                    raise OverLimit(node.start_mark, _too_many())
            open_nodes.discard(key)
            measured[key] = (values, height)
        values, height = measured[key]
        if depth + height - 1 > MAX_YAML_DEPTH:
            raise OverLimit(node.start_mark, _too_deep())
        return values, height

    measure(root, 1)


def yaml_problem(error: yaml.YAMLError) -> str:
    """'line 4, column 7: YAML syntax error: ...' from a PyYAML error, with where the broken
    construct started (an unclosed list is detected only at the end of the file)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    context_mark = getattr(error, "context_mark", None)
    if context and context_mark is not None:
        context += f" started at line {context_mark.line + 1}, column {context_mark.column + 1}"
    text = f"{context}: {problem}" if context else problem
    syntax = isinstance(error, yaml.scanner.ScannerError | yaml.parser.ParserError)
    kind = "YAML syntax error" if syntax else "YAML error"
    if mark is None:
        return f"{kind}: {text}"
    return f"line {mark.line + 1}, column {mark.column + 1}: {kind}: {text}"


def collect_lines(
    node: yaml.Node,
    path: KeyPath,
    file: Path,
    lines: dict[KeyPath, Location],
    problems: list[str],
) -> None:
    """Record the line of every mapping key and list item; a repeated key is a problem."""
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    f"{format_path((*path, key))} (line {line}): key repeated "
                    f"(first at line {first_line[key]}); YAML would keep only the last"
                )
            first_line.setdefault(key, line)
            lines[(*path, key)] = Location(file, line)
            collect_lines(value_node, (*path, key), file, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = Location(file, item.start_mark.line + 1)
            collect_lines(item, (*path, index), file, lines, problems)
