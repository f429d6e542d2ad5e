"""Named registries for component families (norms, activations, losses, optimizers...).

Configs hold names; a registry turns a name into the thing once, at build time. An unknown
name fails with the list of valid ones, so a typo in a grid gets a useful answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ablate.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A family of components, each registered under a unique name.

    Example:
        >>> ACTIVATIONS = Registry("activation")
        >>> @ACTIVATIONS.register("relu")
        ... def relu(): ...
        >>> ACTIVATIONS.get("relu") is relu
        True
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores its target under ``name``; a name registers once only."""

        def store(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return store

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name raises UserError listing valid names."""
        if name not in self._entries:
            raise UserError(f"unknown {self.family} {name!r}; valid: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
