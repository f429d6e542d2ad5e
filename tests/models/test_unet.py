"""The U-Net: every registered part builds, runs forward and backward; structure follows config."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from torch import nn

from ablate.config import ModelConfig, Norm
from ablate.errors import UserError
from ablate.models import UNet, build_model, conv_layers
from ablate.models.layers import ACTIVATIONS, CONV_TYPES, INITS, NORMS, UPSAMPLERS, parse_norm

TINY = [4, 8, 16]
SIZE = 32


def _forward_backward(model: nn.Module, out_channels: int = 1) -> torch.Tensor:
    x = torch.randn(2, 3, SIZE, SIZE)
    logits = model(x)
    assert logits.shape == (2, out_channels, SIZE, SIZE)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return logits


@pytest.mark.parametrize("norm", get_args(Norm))
def test_every_norm_builds_and_trains(norm: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, norm=norm), out_channels=1)
    _forward_backward(model)
    name, double = parse_norm(norm)
    norm_layers = [m for m in model.modules() if "norm" in type(m).__name__.lower()]
    blocks = 2 * 2 + 1  # encoder + decoder blocks, bottleneck
    expected = 0 if name == "none" else blocks * (2 if double else 1)
    assert len(norm_layers) == expected


@pytest.mark.parametrize("activation", ACTIVATIONS.names())
def test_every_activation_builds_and_trains(activation: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, activation=activation), out_channels=1)
    _forward_backward(model)


@pytest.mark.parametrize("upsampling", UPSAMPLERS.names())
def test_every_upsampler_builds_and_trains(upsampling: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, upsampling=upsampling), out_channels=1)
    _forward_backward(model)


@pytest.mark.parametrize("init", INITS.names())
def test_every_init_builds_and_trains(init: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, init=init, dropout=0.2), out_channels=1)
    _forward_backward(model)


def test_registries_ship_the_config_choices() -> None:
    assert sorted({parse_norm(value)[0] for value in get_args(Norm)}) == sorted(NORMS.names())
    assert NORMS.names() == ["none", "batch", "instance", "group"]
    assert ACTIVATIONS.names() == ["relu", "leaky_relu", "elu", "gelu", "silu"]
    assert UPSAMPLERS.names() == ["transpose", "bilinear"]
    assert INITS.names() == ["kaiming", "xavier", "default"]


def test_unknown_part_names_the_valid_ones() -> None:
    with pytest.raises(UserError, match="valid: relu, leaky_relu"):
        UNet(widths=TINY, out_channels=1, activation="tanh")
    with pytest.raises(UserError, match="valid: none, batch, instance, group"):
        parse_norm("layer-double")


def test_group_norm_groups_fit_narrow_widths() -> None:
    model = UNet(widths=[4, 12, 16], out_channels=1, norm="group")
    groups = {m.num_channels: m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {4: 4, 12: 4, 16: 8}


def test_removed_skip_changes_in_channels_and_runs() -> None:
    full = build_model(ModelConfig(widths=TINY), out_channels=1)
    no_first = build_model(ModelConfig(widths=TINY, disabled_skips=[1]), out_channels=1)
    no_skips = build_model(ModelConfig(widths=TINY, skips=False), out_channels=1)
    assert no_first.skips == [False, True]
    assert no_skips.skips == [False, False]
    assert full.decoder[0].block.conv1.in_channels == 8
    assert no_first.decoder[0].block.conv1.in_channels == 4
    assert no_first.decoder[1].block.conv1.in_channels == 16
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # The first decoder conv loses 4 input channels x 4 outputs x 3 x 3 weights.
    assert count(full) - count(no_first) == 4 * 4 * 9
    assert count(no_first) > count(no_skips)
    _forward_backward(no_first)
    _forward_backward(no_skips)


@pytest.mark.parametrize("disabled", [[], [1]])
def test_skip_feeds_encoder_features_to_the_decoder(disabled: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, disabled_skips=disabled), out_channels=1)
    seen: dict[str, torch.Tensor] = {}
    model.encoder[0].register_forward_hook(lambda m, args, out: seen.update(enc=out))
    model.decoder[0].block.register_forward_pre_hook(lambda m, args: seen.update(dec=args[0]))
    model(torch.randn(1, 3, SIZE, SIZE))
    if disabled:
        assert seen["dec"].shape[1] == 4
    else:
        assert seen["dec"].shape[1] == 8
        assert torch.equal(seen["dec"][:, :4], seen["enc"])


@pytest.mark.parametrize("widths", [[4, 8], [4, 8, 16], [2, 4, 8, 16, 32]])
def test_depth_follows_widths(widths: list[int]) -> None:
    model = build_model(ModelConfig(widths=widths), out_channels=1)
    assert model.depth == len(widths) - 1
    assert len(model.encoder) == len(model.decoder) == len(widths) - 1
    assert [level.conv2.out_channels for level in model.encoder] == widths[:-1]
    assert model.bottleneck.conv2.out_channels == widths[-1]
    _forward_backward(model)


def test_multiclass_out_channels() -> None:
    model = build_model(ModelConfig(widths=TINY), out_channels=7)
    assert model.head.out_channels == 7
    _forward_backward(model, out_channels=7)


@pytest.mark.parametrize("upsampling", UPSAMPLERS.names())
def test_channels_last_matches_contiguous(upsampling: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, upsampling=upsampling), out_channels=2).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    assert model.encoder[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(30, 32), (32, 34), (18, 18)])
def test_size_not_divisible_by_two_to_depth_raises(shape: tuple[int, int]) -> None:
    model = build_model(ModelConfig(widths=TINY), out_channels=1)  # depth 2: multiples of 4
    model(torch.zeros(1, 3, 36, 36))
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*depth = 4"):
        model(torch.zeros(1, 3, *shape))


def test_kaiming_and_default_init_differ() -> None:
    torch.manual_seed(0)
    default = build_model(ModelConfig(widths=TINY, init="default"), out_channels=1)
    torch.manual_seed(0)
    kaiming = build_model(ModelConfig(widths=TINY, init="kaiming"), out_channels=1)
    weight_d = default.encoder[1].conv1.weight
    weight_k = kaiming.encoder[1].conv1.weight
    assert not torch.equal(weight_d, weight_k)
    # He normal, fan_out = 8 * 3 * 3: std sqrt(2 / 72) = 0.167; PyTorch's default is
    # uniform with bound 1 / sqrt(fan_in = 36), std 0.096.
    assert weight_k.std().item() == pytest.approx((2 / 72) ** 0.5, rel=0.2)
    assert weight_d.std().item() == pytest.approx(1 / 36**0.5 / 3**0.5, rel=0.2)
    assert all(
        torch.equal(conv.bias, torch.zeros_like(conv.bias))
        for conv in conv_layers(kaiming).values()
        if conv.bias is not None
    )


def test_same_seed_same_weights() -> None:
    config = ModelConfig(widths=TINY)
    torch.manual_seed(3)
    first = build_model(config, out_channels=1).state_dict()
    torch.manual_seed(3)
    second = build_model(config, out_channels=1).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_conv_followed_by_norm_has_no_bias() -> None:
    model = build_model(ModelConfig(widths=TINY, norm="batch"), out_channels=1)
    assert model.encoder[0].conv1.bias is None  # a norm follows
    assert model.encoder[0].conv2.bias is not None  # plain norm: none after the second conv
    plain = build_model(ModelConfig(widths=TINY, norm="none"), out_channels=1)
    assert all(conv.bias is not None for conv in conv_layers(plain).values())


def test_dropout_only_when_positive() -> None:
    dropouts = lambda m: [x for x in m.modules() if isinstance(x, nn.Dropout)]  # noqa: E731
    assert dropouts(build_model(ModelConfig(widths=TINY), out_channels=1)) == []
    model = build_model(ModelConfig(widths=TINY, dropout=0.3), out_channels=1)
    assert len(dropouts(model)) == 1 + 2  # bottleneck + decoder blocks, not the encoder
    assert all(level.block.dropout.p == 0.3 for level in model.decoder)


@pytest.mark.parametrize("widths", [[4, 8], [4, 8, 16], [2, 4, 8, 16]])
def test_module_groups_partition_the_convs(widths: list[int]) -> None:
    model = build_model(ModelConfig(widths=widths, upsampling="bilinear"), out_channels=1)
    groups = model.module_groups()
    depth = len(widths) - 1
    parts = [f"encoder-{k}" for k in range(1, depth + 1)] + ["bottleneck"]
    parts += [f"decoder-{k}" for k in range(1, depth + 1)] + ["head"]
    assert list(groups) == [*parts, "low-level", "high-level"]
    seen: list[nn.Module] = []
    for name in parts:
        for module in groups[name]:
            seen.extend(m for m in module.modules() if isinstance(m, CONV_TYPES))
    convs = list(conv_layers(model).values())
    assert len(seen) == len(convs) == len({id(m) for m in seen})
    assert {id(m) for m in seen} == {id(m) for m in convs}
    shallow = -(-depth // 2)
    assert groups["low-level"] == list(model.encoder[:shallow])
    assert groups["high-level"] == [*model.encoder[shallow:], model.bottleneck]


def test_conv_layers_names() -> None:
    names = list(conv_layers(build_model(ModelConfig(widths=TINY), out_channels=1)))
    assert names[:2] == ["encoder.0.conv1", "encoder.0.conv2"]
    assert "decoder.1.up" in names and "decoder.0.block.conv2" in names
    assert names[-1] == "head"
    assert len(names) == 2 * 2 + 2 + 2 * 3 + 1
