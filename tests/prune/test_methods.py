"""Pruning methods and scopes on a tiny real U-Net: sparsity reached, channels zeroed, targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.config import ModelConfig
from ablate.models import build_model
from ablate.prune.methods import PRUNE_METHODS, method_seed, prune_copy, sparsity
from ablate.prune.scopes import SCOPES, conv_layers, layer_names, scope_targets

UNSTRUCTURED = ["l1_unstructured", "random_unstructured"]
AMOUNTS = [0.1, 0.25, 0.5, 0.75]


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(widths=[4, 8, 16], norm="batch"), out_channels=1)


def _layers(pruned: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    modules = dict(pruned.named_modules())
    return [modules[name] for name in names]


def test_every_method_registered() -> None:
    assert PRUNE_METHODS.names() == [
        "l1_unstructured",
        "random_unstructured",
        "random_structured",
        "global_unstructured",
    ]


@pytest.mark.parametrize("method", UNSTRUCTURED)
@pytest.mark.parametrize("amount", AMOUNTS)
def test_unstructured_reaches_amount_per_layer(
    model: nn.Module, method: str, amount: float
) -> None:
    target = scope_targets(model, ["global"])[0]
    pruned = prune_copy(model, target.layers, method, amount, seed=0)
    for layer in _layers(pruned, target.layers):
        expected = round(amount * layer.weight.numel()) / layer.weight.numel()
        # kaiming weights have no exact zeros, so the zeros are the pruned weights
        assert sparsity([layer]) == pytest.approx(expected, abs=1e-12)


def test_pruning_is_permanent_and_leaves_original(model: nn.Module) -> None:
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    target = scope_targets(model, ["global"])[0]
    pruned = prune_copy(model, target.layers, "l1_unstructured", 0.5, seed=0)
    assert not any(name.endswith("_orig") or name.endswith("_mask") for name in pruned.state_dict())
    assert set(pruned.state_dict()) == set(before)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_l1_prunes_smallest_magnitudes(model: nn.Module) -> None:
    name = "encoder.0.conv2"
    pruned = prune_copy(model, (name,), "l1_unstructured", 0.5, seed=0)
    original = dict(model.named_modules())[name].weight.detach().abs().flatten()
    kept = dict(pruned.named_modules())[name].weight.detach().flatten() != 0
    assert original[kept].min() >= original[~kept].max()


@pytest.mark.parametrize("amount", [0.25, 0.5, 0.75])
def test_structured_zeroes_whole_output_channels(model: nn.Module, amount: float) -> None:
    target = scope_targets(model, ["global"])[0]
    pruned = prune_copy(model, target.layers, "random_structured", amount, seed=3)
    for layer in _layers(pruned, target.layers):
        out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
        weight = layer.weight.detach().transpose(0, out_dim).flatten(1)  # (out, rest)
        zero_channels = (weight == 0).all(dim=1)
        # every zero is part of a fully zeroed output channel
        assert int((weight == 0).sum()) == int(zero_channels.sum()) * weight.shape[1]
        assert int(zero_channels.sum()) == round(amount * weight.shape[0])


@pytest.mark.parametrize("amount", AMOUNTS)
def test_global_reaches_amount_over_all_targets_not_per_layer(
    model: nn.Module, amount: float
) -> None:
    target = scope_targets(model, ["global"])[0]
    pruned = prune_copy(model, target.layers, "global_unstructured", amount, seed=0)
    layers = _layers(pruned, target.layers)
    total = sum(layer.weight.numel() for layer in layers)
    assert sparsity(layers) == pytest.approx(round(amount * total) / total, abs=1e-12)
    per_layer = [sparsity([layer]) for layer in layers]
    assert max(per_layer) - min(per_layer) > 0.05  # layers differ: one ranking across all


def test_amount_zero_changes_nothing(model: nn.Module) -> None:
    target = scope_targets(model, ["global"])[0]
    for method in PRUNE_METHODS.names():
        pruned = prune_copy(model, target.layers, method, 0.0, seed=0)
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, pruned.state_dict()[name]), (method, name)


def test_random_methods_follow_the_seed(model: nn.Module) -> None:
    target = scope_targets(model, ["modules"])[0]
    masks = [
        [
            layer.weight == 0
            for layer in _layers(
                prune_copy(model, target.layers, "random_unstructured", 0.5, seed), target.layers
            )
        ]
        for seed in (1, 1, 2)
    ]
    assert all(torch.equal(a, b) for a, b in zip(masks[0], masks[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(masks[0], masks[2], strict=True))
    assert method_seed(0, "random_unstructured", "global", 0.5) == method_seed(
        0, "random_unstructured", "global", 0.5
    )
    assert method_seed(0, "random_unstructured", "global", 0.5) != method_seed(
        1, "random_unstructured", "global", 0.5
    )


def test_scopes_cover_expected_targets(model: nn.Module) -> None:
    assert SCOPES.names() == ["global", "modules", "groups", "layers"]
    names = {scope: [t.name for t in scope_targets(model, [scope])] for scope in SCOPES.names()}
    assert names["global"] == ["global"]
    assert names["modules"] == [
        "encoder-1",
        "encoder-2",
        "bottleneck",
        "decoder-1",
        "decoder-2",
        "head",
    ]
    assert names["groups"] == [
        "encoder-1",
        "encoder-2",
        "bottleneck",
        "decoder-1",
        "decoder-2",
        "low-level",
        "high-level",
    ]
    assert names["layers"] == list(layer_names(model).values())
    assert "decoder-1.block.conv2" in names["layers"] and "head" in names["layers"]


def test_modules_partition_the_conv_layers(model: nn.Module) -> None:
    every = set(conv_layers(model))
    modules = scope_targets(model, ["modules"])
    covered = [layer for target in modules for layer in target.layers]
    assert sorted(covered) == sorted(every)  # each conv in exactly one block
    groups = {t.name: set(t.layers) for t in scope_targets(model, ["groups"])}
    blocks = {t.name: set(t.layers) for t in modules}
    assert groups["low-level"] == blocks["encoder-1"]
    assert groups["high-level"] == blocks["encoder-2"] | blocks["bottleneck"]
    assert len(scope_targets(model, ["layers"])) == len(every) == 13


def test_plain_module_has_global_and_layer_scopes() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    assert [t.layers for t in scope_targets(plain, ["global"])] == [("0", "2")]
    assert [t.name for t in scope_targets(plain, ["layers"])] == ["0", "2"]
    assert scope_targets(plain, ["modules"]) == []
