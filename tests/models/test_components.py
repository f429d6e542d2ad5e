"""The new parts (residual blocks, SE, attention gates, deep supervision, ASPP, SegNet): every
registered one builds and trains with every existing option, and each does what it says."""

from __future__ import annotations

import itertools
import warnings
from typing import Any, get_args

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ablate.config import Arch, Block, Bottleneck, ModelConfig, Norm
from ablate.models import ARCHS, EncoderDecoder, SegNet, build_model, conv_layers
from ablate.models.attention import AttentionGate
from ablate.models.blocks import BLOCKS, ResidualBlock, SqueezeExcite
from ablate.models.bottlenecks import ASPP, ASPP_RATES, BOTTLENECKS
from ablate.models.layers import ACTIVATIONS, CONV_TYPES, INITS, UPSAMPLERS
from ablate.models.segnet import pool_with_indices, unpool
from ablate.prune.methods import prune_copy, sparsity
from ablate.prune.scopes import layer_names, scope_targets

TINY = [4, 8, 16]
SIZE = 32
DEPTHS = {1: [4, 8], 2: [4, 8, 16], 3: [4, 8, 8, 16]}


def _config(arch: str = "unet", **fields: Any) -> ModelConfig:
    """Every new part on (attention only where the architecture has skips)."""
    rich: dict[str, Any] = {
        "widths": TINY,
        "block": "residual",
        "se": True,
        "bottleneck": "aspp",
        "deep_supervision": True,
        "attention": arch == "unet",
    }
    return ModelConfig(arch=arch, **{**rich, **fields})


def _train_step(model: EncoderDecoder, batch: int = 2, out_channels: int = 1) -> None:
    """Forward with aux heads, backward; every parameter gets a finite gradient."""
    model.train()
    x = torch.randn(batch, 3, SIZE, SIZE)
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (batch, out_channels, SIZE, SIZE)
    assert len(aux) == (model.depth - 1 if model.deep_supervision else 0)
    assert all(head.shape == logits.shape for head in aux)
    (logits.square().mean() + sum(head.square().mean() for head in aux)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_registries_ship_the_config_choices() -> None:
    assert ARCHS.names() == list(get_args(Arch)) == ["unet", "segnet"]
    assert BLOCKS.names() == list(get_args(Block)) == ["plain", "residual"]
    assert BOTTLENECKS.names() == list(get_args(Bottleneck)) == ["plain", "aspp"]


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("bottleneck", BOTTLENECKS.names())
@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("norm", get_args(Norm))
def test_every_combination_builds_and_trains(
    arch: str, block: str, bottleneck: str, depth: int, norm: str
) -> None:
    torch.manual_seed(0)
    config = _config(
        arch,
        widths=DEPTHS[depth],
        block=block,
        bottleneck=bottleneck,
        norm=norm,
        deep_supervision=depth >= 2,
    )
    model = build_model(config, out_channels=1)
    assert isinstance(model, EncoderDecoder) and model.depth == depth
    _train_step(model)


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("se", [False, True])
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_flags_off_and_on_build_and_train(arch: str, se: bool, deep_supervision: bool) -> None:
    torch.manual_seed(0)
    model = build_model(
        _config(arch, se=se, deep_supervision=deep_supervision, block="plain"), out_channels=7
    )
    assert model.deep_supervision == deep_supervision
    assert any(isinstance(m, SqueezeExcite) for m in model.modules()) == se
    _train_step(model, out_channels=7)


@pytest.mark.parametrize(
    ("arch", "activation"), itertools.product(ARCHS.names(), ACTIVATIONS.names())
)
def test_every_activation_with_the_new_parts(arch: str, activation: str) -> None:
    torch.manual_seed(0)
    _train_step(build_model(_config(arch, activation=activation), out_channels=1))


@pytest.mark.parametrize("upsampling", UPSAMPLERS.names())
def test_every_upsampler_with_attention(upsampling: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(upsampling=upsampling), out_channels=1)
    _train_step(model)


@pytest.mark.parametrize(("arch", "init"), itertools.product(ARCHS.names(), INITS.names()))
def test_every_init_with_dropout_and_the_new_parts(arch: str, init: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(arch, init=init, dropout=0.2), out_channels=1)
    # Dropout in the bottleneck (ASPP projection) and every decoder block, not the encoder.
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 1 + model.depth
    _train_step(model)


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("block", BLOCKS.names())
def test_channels_last_matches_contiguous(arch: str, block: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(arch, block=block), out_channels=2).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected, expected_aux = model.forward_with_aux(x)
        model = model.to(memory_format=torch.channels_last)
        actual, actual_aux = model.forward_with_aux(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    for got, want in zip(actual_aux, expected_aux, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS.names())
def test_bf16_autocast_on_cpu_trains_and_stays_close(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(arch, norm="group-double"), out_channels=1).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        reference = model(x)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, aux = model.forward_with_aux(x)
    assert logits.dtype == torch.bfloat16 and all(head.dtype == torch.bfloat16 for head in aux)
    (logits.float().square().mean() + sum(h.float().square().mean() for h in aux)).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x).float()
    # bf16 keeps 8 bits of mantissa: close to fp32, not equal. SegNet is the looser of the
    # two (correlation 0.98-0.997 against U-Net's 0.9999): rounding breaks near-ties inside
    # pooling windows differently, and unpooling then puts values at other positions.
    correlation = torch.corrcoef(torch.stack([low.flatten(), reference.flatten()]))[0, 1]
    assert correlation > 0.95


@pytest.mark.parametrize("arch", ARCHS.names())
def test_model_call_returns_the_main_logits_only(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(_config(arch), out_channels=1)
    x = torch.randn(2, 3, SIZE, SIZE)
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            out = model(x)
            logits, aux = model.forward_with_aux(x)
        assert isinstance(out, torch.Tensor) and torch.equal(out, logits)
        assert len(aux) == model.depth - 1


@pytest.mark.parametrize("arch", ARCHS.names())
def test_aux_heads_are_off_the_logits_path(arch: str) -> None:
    model = build_model(_config(arch, widths=[4, 8, 16, 32]), out_channels=1)
    assert [head.in_channels for head in model.aux_heads.heads] == [8, 16]
    names = list(conv_layers(model))
    assert names and not any(name.startswith("aux_heads") for name in names)
    every = {name for name, m in model.named_modules() if isinstance(m, CONV_TYPES)}
    assert every - set(names) == {"aux_heads.heads.0", "aux_heads.heads.1"}


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("depth", [2, 3])
def test_module_groups_partition_the_convs(arch: str, depth: int) -> None:
    model = build_model(_config(arch, widths=DEPTHS[depth]), out_channels=1)
    groups = model.module_groups()
    parts = [f"encoder-{k}" for k in range(1, depth + 1)] + ["bottleneck"]
    parts += [f"decoder-{k}" for k in range(1, depth + 1)] + ["head"]
    assert list(groups) == [*parts, "low-level", "high-level"]
    seen = [
        id(m)
        for name in parts
        for module in groups[name]
        for m in module.modules()
        if isinstance(m, CONV_TYPES)
    ]
    assert sorted(seen) == sorted(id(m) for m in conv_layers(model).values())


def test_unpool_matches_max_unpool2d() -> None:
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 5, 8, 12))  # ReLU zeros: ties inside windows
    pooled, indices = pool_with_indices(x)
    with warnings.catch_warnings():  # max_unpool2d may warn about determinism; only compared
        warnings.simplefilter("ignore")
        expected = F.max_unpool2d(pooled, indices, 2, output_size=x.shape[-2:])
    assert torch.equal(unpool(pooled, indices), expected)
    channels_last = x.to(memory_format=torch.channels_last)
    assert torch.equal(unpool(*pool_with_indices(channels_last)), expected)


def test_unpool_runs_under_deterministic_algorithms_without_warning() -> None:
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            unpool(*pool_with_indices(x)).sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    # The gradient reaches exactly the maxima: one per 2x2 window.
    assert int((x.grad != 0).sum()) == 2 * 3 * 4 * 4


def test_segnet_decoder_sees_no_encoder_features() -> None:
    model = build_model(ModelConfig(arch="segnet", widths=[4, 8, 16]), out_channels=1)
    assert isinstance(model, SegNet)
    # Each decoder block takes the level's width only: nothing is concatenated.
    assert [level.block.conv1.in_channels for level in model.decoder] == [4, 8]
    assert [level.project.in_channels for level in model.decoder] == [8, 16]
    seen: dict[str, torch.Tensor] = {}
    model.decoder[0].block.register_forward_pre_hook(lambda m, args: seen.update(dec=args[0]))
    model(torch.randn(1, 3, SIZE, SIZE))
    # Unpooled: three of every four positions of each 2x2 window are zero.
    assert (seen["dec"] != 0).float().mean().item() <= 0.25


def test_segnet_skips_the_projection_when_widths_match() -> None:
    model = build_model(ModelConfig(arch="segnet", widths=[8, 8, 16]), out_channels=1)
    assert model.decoder[0].project is None and model.decoder[1].project is not None


def test_attention_gates_only_the_skips_that_are_on() -> None:
    model = build_model(
        ModelConfig(widths=[4, 8, 16, 32], attention=True, disabled_skips=[2]), out_channels=1
    )
    gates = [level.gate for level in model.decoder]
    assert [gate is not None for gate in gates] == [True, False, True]
    assert gates[0].theta.in_channels == 4 and gates[0].phi.in_channels == 8


def test_attention_gate_weights_skip_pixels_within_zero_and_one() -> None:
    torch.manual_seed(0)
    gate = AttentionGate(skip_channels=4, gate_channels=8)
    skip = torch.rand(2, 4, 16, 16) + 0.5  # positive, so the ratio is the coefficient
    gated = gate(skip, torch.randn(2, 8, 8, 8))
    ratio = gated / skip
    assert gated.shape == skip.shape
    assert ((ratio > 0) & (ratio < 1)).all()
    # One coefficient per pixel, shared by the channels.
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    assert ratio.std() > 0


def test_attention_feeds_the_gated_skip_into_the_decoder() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, attention=True), out_channels=1)
    seen: dict[str, torch.Tensor] = {}
    model.encoder[0].register_forward_hook(lambda m, args, out: seen.update(enc=out))
    model.decoder[0].gate.register_forward_hook(lambda m, args, out: seen.update(gated=out))
    model.decoder[0].block.register_forward_pre_hook(lambda m, args: seen.update(dec=args[0]))
    model(torch.randn(1, 3, SIZE, SIZE))
    assert torch.equal(seen["dec"][:, :4], seen["gated"])
    assert not torch.equal(seen["gated"], seen["enc"])


def test_residual_block_adds_its_shortcut() -> None:
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {
        "norm": lambda c: None,
        "double_norm": True,
        "activation": nn.ReLU,
    }
    same = ResidualBlock(8, 8, **kwargs)
    wider = ResidualBlock(4, 8, **kwargs)
    assert isinstance(same.shortcut, nn.Identity)
    assert wider.shortcut.conv1.kernel_size == (1, 1)
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(same(x), torch.relu(same.branch(x) + x))


def test_residual_blocks_everywhere_with_norms_in_the_projection() -> None:
    model = build_model(ModelConfig(widths=TINY, block="residual", norm="batch"), out_channels=1)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 * 2 + 1  # encoder + decoder levels, bottleneck
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert all(isinstance(b.shortcut.norm1, nn.BatchNorm2d) for b in projections)
    assert not any(b.shortcut.conv1.bias is not None for b in projections)


def test_squeeze_excite_scales_channels_and_keeps_a_few_units() -> None:
    torch.manual_seed(0)
    narrow, wide = SqueezeExcite(8), SqueezeExcite(128)
    assert narrow.reduce.out_channels == 4 and wide.reduce.out_channels == 16
    x = torch.rand(2, 8, 6, 6) + 0.5
    ratio = narrow(x) / x
    assert ((ratio > 0) & (ratio < 1)).all()
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))  # per channel


def test_se_sits_in_every_block() -> None:
    model = build_model(ModelConfig(widths=TINY, se=True), out_channels=1)
    assert sum(isinstance(m, SqueezeExcite) for m in model.modules()) == 2 * 2 + 1


@pytest.mark.parametrize("norm", get_args(Norm))
def test_aspp_trains_with_batch_size_one(norm: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=TINY, bottleneck="aspp", norm=norm), out_channels=1)
    assert isinstance(model.bottleneck, ASPP)
    dilations = [branch.conv1.dilation[0] for branch in model.bottleneck.branches]
    assert dilations == [1, *ASPP_RATES]
    _train_step(model, batch=1)


@pytest.mark.parametrize("arch", ARCHS.names())
def test_sizes_not_divisible_by_two_to_depth_raise(arch: str) -> None:
    model = build_model(_config(arch), out_channels=1)
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*depth = 4"):
        model(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match="not divisible"):
        model.forward_with_aux(torch.zeros(1, 3, 30, 32))


def test_in_channels_reach_the_first_conv() -> None:
    for arch in ARCHS.names():
        model = build_model(ModelConfig(arch=arch, widths=TINY), out_channels=1, in_channels=1)
        assert model.encoder[0].conv1.in_channels == 1
        assert model(torch.zeros(1, 1, SIZE, SIZE)).shape == (1, 1, SIZE, SIZE)


@pytest.mark.parametrize("arch", ARCHS.names())
def test_pruning_scopes_reach_every_conv_of_the_new_parts(arch: str) -> None:
    model = build_model(_config(arch), out_channels=1)
    blocks = scope_targets(model, ["modules"])
    assert [t.name for t in blocks] == [
        "encoder-1",
        "encoder-2",
        "bottleneck",
        "decoder-1",
        "decoder-2",
        "head",
    ]
    covered = sorted(layer for target in blocks for layer in target.layers)
    assert covered == sorted(conv_layers(model))  # each conv in exactly one block
    readable = layer_names(model)
    assert "bottleneck.branches.1.conv1" in readable.values()  # an ASPP branch
    assert "encoder-1.branch.se.reduce" in readable.values()  # SE inside a residual block
    if arch == "unet":
        assert "decoder-1.gate.theta" in readable.values()
    else:
        assert "decoder-1.project" in readable.values()
    pruned = prune_copy(model, blocks[2].layers, "l1_unstructured", 0.5, seed=0)
    assert sparsity([dict(pruned.named_modules())[n] for n in blocks[2].layers]) > 0.45
    pruned(torch.randn(1, 3, SIZE, SIZE))
