"""Pruning methods: a registry of functions over `torch.nn.utils.prune`.

A method prunes the `weight` of every conv layer of one target in place and makes the
pruning permanent (`prune.remove`), so the model evaluates like any other model afterwards.
Callers apply methods to a deep copy of the trained model (see `prune_copy`).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from ablate.registry import Registry

PruneFn = Callable[[Sequence[nn.Module], float], None]

PRUNE_METHODS: Registry[PruneFn] = Registry("pruning method")


def _output_dim(layer: nn.Module) -> int:
    """Weight dimension of the output channels: transposed convs store (in, out, kh, kw)."""
    return 1 if isinstance(layer, nn.ConvTranspose2d) else 0


@PRUNE_METHODS.register("l1_unstructured")
def l1_unstructured(layers: Sequence[nn.Module], amount: float) -> None:
    """Each layer loses its `amount` share of smallest-magnitude weights."""
    for layer in layers:
        prune.l1_unstructured(layer, "weight", amount=float(amount))


@PRUNE_METHODS.register("random_unstructured")
def random_unstructured(layers: Sequence[nn.Module], amount: float) -> None:
    """Each layer loses its `amount` share of weights chosen at random."""
    for layer in layers:
        prune.random_unstructured(layer, "weight", amount=float(amount))


@PRUNE_METHODS.register("random_structured")
def random_structured(layers: Sequence[nn.Module], amount: float) -> None:
    """Each layer loses its `amount` share of whole output channels chosen at random."""
    for layer in layers:
        prune.random_structured(layer, "weight", amount=float(amount), dim=_output_dim(layer))


@PRUNE_METHODS.register("global_unstructured")
def global_unstructured(layers: Sequence[nn.Module], amount: float) -> None:
    """The `amount` share of smallest-magnitude weights across all layers together.

    Layers with larger weights keep more of them, so per-layer sparsity varies while the
    sparsity over the whole target matches `amount`.
    """
    parameters = [(layer, "weight") for layer in layers]
    prune.global_unstructured(parameters, pruning_method=prune.L1Unstructured, amount=float(amount))


def method_seed(run_seed: int, method: str, target: str, amount: float) -> int:
    """A seed for the random methods: fixed by the run seed, distinct per (method, target, amount).

    crc32 instead of `hash()` because Python salts string hashes per process.
    """
    key = f"{run_seed}|{method}|{target}|{amount:.6f}".encode()
    return zlib.crc32(key)


def apply_method(method: str, layers: Sequence[nn.Module], amount: float, seed: int) -> None:
    """Prune `layers` in place with `method`, then make the pruning permanent.

    The random methods draw from torch's global generator; forking it keeps the caller's
    random state untouched and makes the masks depend on `seed` only.
    """
    prune_fn = PRUNE_METHODS.get(method)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prune_fn(layers, amount)
    for layer in layers:
        prune.remove(layer, "weight")


def prune_copy(
    model: nn.Module, layer_names: Sequence[str], method: str, amount: float, seed: int
) -> nn.Module:
    """A deep copy of `model` with the conv layers named `layer_names` pruned.

    Args:
        model: the trained model (left unchanged).
        layer_names: qualified names as in `model.named_modules()`.
        method: a name in `PRUNE_METHODS`.
        amount: share of weights (or output channels) to prune, in [0, 1].
        seed: seed of the random methods.

    Example:
        >>> pruned = prune_copy(model, ["encoder.0.conv1"], "l1_unstructured", 0.5, seed=0)
    """
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    apply_method(method, [modules[name] for name in layer_names], amount, seed)
    return pruned


def sparsity(layers: Sequence[nn.Module]) -> float:
    """Share of exactly-zero weights over all `weight` tensors of `layers` together."""
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    elements = sum(layer.weight.numel() for layer in layers)
    return zeros / elements if elements else 0.0
