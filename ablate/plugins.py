"""Plug-ins: packages that add components through the entry-point group `ablate.plugins`.

A plug-in package declares, in its pyproject.toml,

    [project.entry-points."ablate.plugins"]
    my-parts = "my_package:register"

where `register(plugin: PluginContext)` adds its entries to ablate's registries:

    def register(plugin):
        plugin.add(BLOCKS, "ghost", GhostBlock)          # ablate.models.blocks
        plugin.add(LOSSES, "boundary", boundary_loss)    # ablate.train.losses
        plugin.add(REMOVABLE, "bias", Removal(...))      # ablate.grid.components

Families: ARCHS (models.build), BLOCKS (models.blocks), BOTTLENECKS (models.bottlenecks),
LOSSES (train.losses), AUGMENTATIONS (data.augment), REMOVABLE (grid.components), READERS
(data.source). A grid then names the new entries like built-ins.

`load_plugins()` imports and registers every installed plug-in once per process; the
command line, each Ray trial and the Python API call it before validating a grid, and the
config calls it when it meets a name no built-in has (so any process that reads a RunConfig
naming a plug-in's component has it). This module sits just above `ablate.registry` and
imports nothing else of ablate: the plug-in imports the registries it extends, and each
family checks its own contract when an entry is added (`Registry(family, check=...)`).

A plug-in that cannot be imported, whose `register` fails, that registers a name twice (or
a built-in's name) or whose entry breaks its family's contract stops loading with a
`PluginError` (exit 2) naming the package and the entry point; its entries are removed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ablate.errors import UserError
from ablate.registry import Registry, remove_plugin_entries

GROUP = "ablate.plugins"
"""The entry-point group ablate reads."""


class PluginError(UserError):
    """A plug-in that cannot be used: the message names its package and entry point."""


@dataclass(frozen=True)
class Plugin:
    """One entry point of the group: the package that provides it, its name and target."""

    package: str
    name: str
    value: str

    def __str__(self) -> str:
        return f"plug-in {self.package!r} (entry point {self.name} = {self.value})"


class PluginContext:
    """What a plug-in's `register` function receives: `add` puts one entry in a registry,
    recorded as coming from the plug-in's package."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin

    def add(self, registry: Registry, name: str, entry: Any) -> None:
        """Add `entry` to `registry` under `name` (checked against the family's contract).

        Raises:
            PluginError: the name is taken, or the entry breaks the family's contract.
        """
        if not isinstance(registry, Registry):
            raise PluginError(f"{self.plugin}: add() needs one of ablate's registries")
        try:
            registry.add(name, entry, source=self.plugin.package)
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(
                f"{self.plugin}: {registry.family} {name!r}: {_reason(error)}"
            ) from None


_LOCK = threading.RLock()
_LOADED: list[Plugin] | None = None
_FAILED: PluginError | None = None
_PLUGINS: dict[str, Plugin] = {}
"""package -> its (last) entry point, to name it in messages."""


def load_plugins() -> list[Plugin]:
    """Import and register every installed plug-in, once per process (idempotent).

    Returns the plug-ins loaded. A plug-in that fails raises PluginError now and at every
    later call, so no command of this process runs with half of the plug-ins.

    Example:
        >>> from ablate.plugins import load_plugins
        >>> [str(plugin) for plugin in load_plugins()]
        ["plug-in 'ablate-example-plugin' (entry point example = ablate_example_plugin:register)"]
    """
    global _LOADED, _FAILED
    with _LOCK:
        if _FAILED is not None:
            raise _FAILED
        if _LOADED is not None:
            return list(_LOADED)
        _LOADED = []  # while loading: a config validated by a plug-in's check does not recurse
        for entry_point in _entry_points():
            plugin = _plugin(entry_point)
            try:
                _load_one(entry_point, plugin)
            except PluginError as error:
                remove_plugin_entries(plugin.package)
                _FAILED = error
                raise
            _LOADED.append(plugin)
        return list(_LOADED)


def loaded_plugins() -> list[Plugin]:
    """The plug-ins loaded so far in this process ([] before `load_plugins`)."""
    return list(_LOADED or [])


def describe_source(package: str) -> str:
    """How messages name the origin of a registry entry: `ablate`, or the plug-in."""
    plugin = _PLUGINS.get(package)
    return str(plugin) if plugin is not None else package


def unload_plugins() -> None:
    """Remove every plug-in's entries and forget what was loaded, so `load_plugins` reads
    the installed plug-ins again (tests; a long-lived process after an uninstall)."""
    global _LOADED, _FAILED
    with _LOCK:
        remove_plugin_entries()
        _LOADED, _FAILED = None, None
        _PLUGINS.clear()


def _entry_points() -> list[metadata.EntryPoint]:
    found = metadata.entry_points(group=GROUP)
    return sorted(found, key=lambda point: (_package(point), point.name))


def _package(entry_point: metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return dist.name if dist is not None else entry_point.module


def _plugin(entry_point: metadata.EntryPoint) -> Plugin:
    plugin = Plugin(_package(entry_point), entry_point.name, entry_point.value)
    _PLUGINS[plugin.package] = plugin
    return plugin


def _load_one(entry_point: metadata.EntryPoint, plugin: Plugin) -> None:
    """Import the entry point's target and call it with a PluginContext."""
    try:
        register = entry_point.load()
    except Exception as error:  # any import failure of foreign code
        raise PluginError(f"{plugin}: cannot be imported: {_reason(error)}") from None
    if not callable(register):
        raise PluginError(
            f"{plugin}: the entry point must name a function register(plugin), "
            f"got a {type(register).__name__}"
        )
    try:
        register(PluginContext(plugin))
    except PluginError:
        raise
    except Exception as error:
        raise PluginError(f"{plugin}: register() failed: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    """'TypeError: message', first line only."""
    text = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
