"""YAML key paths and how messages show them: ("ablations", "swap", "lr", 1) is shown as
`ablations.swap.lr[1]`. Shared by the loader and the expansion, which both report problems
at the key that caused them."""

from __future__ import annotations

from collections.abc import Callable

from ablate.config import CONTROL_CHARACTERS

EXTENDS = "extends"
"""The top-level key naming the file a grid extends (read before anything else)."""
MAX_SHOWN = 60
"""Characters of a key or value quoted in a message; a longer one is cut (a message names
its culprit on one line, however long the culprit is)."""

KeyPath = tuple[str | int, ...]
"""A YAML key path: ("ablations", "swap", "lr", 1) is shown as ablations.swap.lr[1]."""

Locate = Callable[[KeyPath], str]
"""key path -> 'key.path (line N)' for messages."""


def format_path(path: KeyPath) -> str:
    """'ablations.swap.lr[1]' for ("ablations", "swap", "lr", 1); a key holding a control
    character, or a long one, is quoted and cut (`variants['tiny\\n']`), so a message stays
    on one line."""
    text = ""
    for part in path:
        odd = CONTROL_CHARACTERS.search(str(part)) or len(str(part)) > MAX_SHOWN
        if isinstance(part, int) or odd:
            text += f"[{shown(part)}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def shown(value: object) -> str:
    """`repr(value)`, cut to MAX_SHOWN characters with its length when longer."""
    text = repr(value)
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN]}... ({len(str(value)):,} characters)"
