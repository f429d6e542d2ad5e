"""YAML key paths of a grid and how messages show them: `ablations.swap.lr[1] (line 12)`."""

from __future__ import annotations

from collections.abc import Callable

KeyPath = tuple[str | int, ...]
"""A YAML key path: ("ablations", "swap", "lr", 1) is shown as ablations.swap.lr[1]."""

Locate = Callable[[KeyPath], str]
"""key path -> 'key.path (line N)' for messages."""


def format_path(path: KeyPath) -> str:
    """'ablations.swap.lr[1]' for ("ablations", "swap", "lr", 1)."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"
