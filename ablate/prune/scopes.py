"""Scopes: which conv layers one pruning step reaches, as named targets.

A target is a readable name ("global", "encoder-2", "decoder-1.conv2") and the qualified
names of the conv layers it covers. Block and group names come from the model's
`module_groups()` (see docs/ARCHITECTURE.md, "Model"); a model without it (any other
`nn.Module`) still has the `global` and `layers` scopes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ablate.models import conv_layers
from ablate.registry import Registry

# Single blocks of the U-Net; "low-level"/"high-level" are unions of blocks.
BLOCK_PATTERN = re.compile(r"^(encoder-\d+|bottleneck|decoder-\d+|head)$")
GROUP_PATTERN = re.compile(r"^(encoder-\d+|decoder-\d+|bottleneck|low-level|high-level)$")


@dataclass(frozen=True)
class Target:
    """The conv layers reached by one pruning step."""

    scope: str
    name: str
    layers: tuple[str, ...]  # qualified names in model.named_modules()


ScopeFn = Callable[[nn.Module], list[Target]]
SCOPES: Registry[ScopeFn] = Registry("pruning scope")


def _groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    groups = getattr(model, "module_groups", None)
    return groups() if callable(groups) else {}


def layer_names(model: nn.Module) -> dict[str, str]:
    """Qualified conv name -> readable name such as "decoder-1.conv2" or "head".

    A conv inside a block is named after the block plus its path inside it; a conv that no
    block holds keeps its qualified name.
    """
    block_of: dict[int, str] = {}
    for group, modules in _groups(model).items():
        if not BLOCK_PATTERN.match(group):
            continue
        for index, module in enumerate(modules):
            prefix = group if len(modules) == 1 else f"{group}.{index}"
            for inner, sub in module.named_modules():
                block_of[id(sub)] = f"{prefix}.{inner}" if inner else prefix
    return {name: block_of.get(id(module), name) for name, module in conv_layers(model).items()}


def _group_targets(model: nn.Module, scope: str, pattern: re.Pattern[str]) -> list[Target]:
    """One target per module group whose name matches `pattern`, with its conv layers."""
    qualified = {id(module): name for name, module in conv_layers(model).items()}
    targets = []
    for group, modules in _groups(model).items():
        if not pattern.match(group):
            continue
        layers = [
            qualified[id(sub)]
            for module in modules
            for sub in module.modules()
            if id(sub) in qualified
        ]
        if layers:
            targets.append(Target(scope, group, tuple(dict.fromkeys(layers))))
    return targets


@SCOPES.register("global")
def global_scope(model: nn.Module) -> list[Target]:
    """Every conv layer at once."""
    return [Target("global", "global", tuple(conv_layers(model)))]


@SCOPES.register("modules")
def modules_scope(model: nn.Module) -> list[Target]:
    """Each block alone: encoder-k, bottleneck, decoder-k, head."""
    return _group_targets(model, "modules", BLOCK_PATTERN)


@SCOPES.register("groups")
def groups_scope(model: nn.Module) -> list[Target]:
    """Encoder level k, decoder level k, bottleneck, low-level and high-level extractors."""
    return _group_targets(model, "groups", GROUP_PATTERN)


@SCOPES.register("layers")
def layers_scope(model: nn.Module) -> list[Target]:
    """Each conv layer alone, under its readable name."""
    readable = layer_names(model)
    return [Target("layers", readable[name], (name,)) for name in conv_layers(model)]


def scope_targets(model: nn.Module, scopes: list[str]) -> list[Target]:
    """The targets of every scope in `scopes`, in that order.

    Example:
        >>> [t.name for t in scope_targets(model, ["global"])]
        ['global']
    """
    return [target for scope in scopes for target in SCOPES.get(scope)(model)]
