"""Named registries for component families (norms, activations, losses, optimizers...).

Configs hold names; a registry turns a name into the thing once, at build time. An unknown
name fails with the list of valid ones (and a close match), so a typo in a grid gets a useful
answer.

Every entry records where it comes from: `ablate` for the built-ins, the package name of the
plug-in that added it (`ablate.plugins`) otherwise. The names plug-ins added are also kept
here by family (`plugin_names`), torch-free, so the config can accept them without
importing the modules that hold the registries. A family may have a contract check that
every plug-in entry must pass when it is added (a block's output shape, a loss's scalar).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ablate.errors import UserError

T = TypeVar("T")

BUILTIN = "ablate"
"""The source of ablate's own entries."""

_REGISTRIES: list[Registry] = []
_PLUGIN_NAMES: dict[str, dict[str, str]] = {}
"""family -> {name: package} of the entries plug-ins added."""


class Registry(Generic[T]):
    """A family of components, each registered under a unique name.

    Example:
        >>> ACTIVATIONS = Registry("activation")
        >>> @ACTIVATIONS.register("relu")
        ... def relu(): ...
        >>> ACTIVATIONS.get("relu") is relu
        True
    """

    def __init__(self, family: str, check: Callable[[str, T], None] | None = None) -> None:
        """`check(name, entry)` raises when a plug-in's entry breaks the family's contract."""
        self.family = family
        self.check = check
        self._entries: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        _REGISTRIES.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores its target under ``name`` as a built-in; a name registers
        once only."""

        def store(entry: T) -> T:
            self.add(name, entry)
            return entry

        return store

    def add(self, name: str, entry: T, source: str = BUILTIN) -> None:
        """Store `entry` under `name`, added by `source` (a plug-in's package name).

        A plug-in's entry must pass the family's contract check; when it does not, it is
        removed again before the check's exception propagates.

        Raises:
            ValueError: `name` is registered already (by ablate or by another package).
        """
        if name in self._entries:
            raise ValueError(
                f"{self.family} {name!r} is registered already (by {self._sources[name]})"
            )
        self._entries[name] = entry
        self._sources[name] = source
        if source == BUILTIN:
            return
        _PLUGIN_NAMES.setdefault(self.family, {})[name] = source
        try:
            if self.check is not None:
                self.check(name, entry)
        except BaseException:
            self._forget(name)
            raise

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name raises UserError listing valid names."""
        if name not in self._entries:
            raise UserError(unknown_name(self.family, name, self.names()))
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order (built-ins first)."""
        return list(self._entries)

    def source(self, name: str) -> str:
        """Who registered `name`: `ablate`, or the package of the plug-in that added it."""
        return self._sources[name]

    def remove_source(self, source: str) -> None:
        """Drop every entry `source` added (a plug-in that failed, or unloading)."""
        for name in [name for name, owner in self._sources.items() if owner == source]:
            self._forget(name)

    def _forget(self, name: str) -> None:
        self._entries.pop(name, None)
        source = self._sources.pop(name, None)
        if source != BUILTIN:
            _PLUGIN_NAMES.get(self.family, {}).pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


def plugin_names(family: str) -> dict[str, str]:
    """{name: package} of the entries plug-ins added to `family` (e.g. "block"), in order."""
    return dict(_PLUGIN_NAMES.get(family, {}))


def remove_plugin_entries(source: str | None = None) -> None:
    """Drop the entries of plug-in package `source` (None: of every plug-in) everywhere."""
    for registry in _REGISTRIES:
        sources = {registry.source(name) for name in registry.names()} - {BUILTIN}
        for owner in sources if source is None else sources & {source}:
            registry.remove_source(owner)


def unknown_name(kind: str, name: object, valid: list[str]) -> str:
    """ "unknown block 'resdual' (did you mean 'residual'?); valid: plain, residual"."""
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}"
