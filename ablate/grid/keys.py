"""YAML key paths and how messages show them: ("ablations", "swap", "lr", 1) is shown as
`ablations.swap.lr[1]`. Shared by the loader and the expansion, which both report problems
at the key that caused them."""

from __future__ import annotations

from collections.abc import Callable

from ablate.config import CONTROL_CHARACTERS

KeyPath = tuple[str | int, ...]
"""A YAML key path: ("ablations", "swap", "lr", 1) is shown as ablations.swap.lr[1]."""

Locate = Callable[[KeyPath], str]
"""key path -> 'key.path (line N)' for messages."""


def format_path(path: KeyPath) -> str:
    """'ablations.swap.lr[1]' for ("ablations", "swap", "lr", 1); a key holding a control
    character is quoted (`variants['tiny\\n']`), so a message stays on one line."""
    text = ""
    for part in path:
        if isinstance(part, int) or CONTROL_CHARACTERS.search(str(part)):
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"
