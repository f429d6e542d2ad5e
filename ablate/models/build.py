"""From a `ModelConfig` to a network: the `ARCHS` registry and the one config-to-arguments
translation (`build_model`).

An architecture registers a builder `(config, out_channels, in_channels) -> nn.Module`
whose module returns the main logits from `model(x)`; with deep supervision it also has
`forward_with_aux(x) -> (logits, [aux logits])` and `deep_supervision = True`. Pruning
scopes use `module_groups()` when the module has it (see `EncoderDecoder`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ablate.config import ModelConfig
from ablate.models.blocks import expect_shape
from ablate.models.encoder_decoder import AUX_HEADS
from ablate.models.layers import CONV_TYPES, parse_norm
from ablate.models.segnet import SegNet
from ablate.models.unet import UNet
from ablate.registry import Registry

ArchBuilder = Callable[[ModelConfig, int, int], nn.Module]
"""(model config, out_channels, in_channels) -> the network."""


def check_arch(name: str, builder: ArchBuilder) -> None:
    """A plug-in architecture: widths [4, 8, 16], 2 classes, 3- and 1-channel inputs (the
    input modes) map (2, C, 32, 32) to logits (2, 2, 32, 32)."""
    config = ModelConfig(widths=[4, 8, 16], arch=name)
    for channels in (3, 1):
        model = builder(config, 2, channels)
        expect_shape(model, torch.randn(2, channels, 32, 32), (2, 2, 32, 32))


ARCHS: Registry[ArchBuilder] = Registry("architecture", check=check_arch)


def shared_arguments(config: ModelConfig) -> dict[str, Any]:
    """The keyword arguments every built-in architecture takes from the config."""
    norm, double_norm = parse_norm(config.norm)
    return {
        "widths": config.widths,
        "norm": norm,
        "double_norm": double_norm,
        "activation": config.activation,
        "dropout": config.dropout,
        "init": config.init,
        "block": config.block,
        "se": config.se,
        "bottleneck": config.bottleneck,
        "deep_supervision": config.deep_supervision,
    }


@ARCHS.register("unet")
def build_unet(config: ModelConfig, out_channels: int, in_channels: int = 3) -> UNet:
    """The U-Net of `config`: shared parts plus upsampling, skips and attention gates."""
    return UNet(
        **shared_arguments(config),
        out_channels=out_channels,
        in_channels=in_channels,
        upsampling=config.upsampling,
        skips=[config.skip_enabled(level) for level in range(1, config.depth + 1)],
        attention=config.attention,
    )


@ARCHS.register("segnet")
def build_segnet(config: ModelConfig, out_channels: int, in_channels: int = 3) -> SegNet:
    """The SegNet of `config` (the config validator refuses the U-Net-only settings)."""
    return SegNet(**shared_arguments(config), out_channels=out_channels, in_channels=in_channels)


def build_model(config: ModelConfig, out_channels: int, in_channels: int = 3) -> nn.Module:
    """The network a `ModelConfig` describes.

    Args:
        config: the run's model section; `config.arch` picks the ARCHS builder.
        out_channels: 1 for `task: binary`, 1 + categories for `task: multiclass`.
        in_channels: input image channels.

    Example:
        >>> build_model(ModelConfig(widths=[8, 16, 32], norm="instance"), out_channels=1).depth
        2
    """
    return ARCHS.get(config.arch)(config, out_channels, in_channels)


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.ConvTranspose2d]:
    """Every conv (and transposed conv) on the path of `model(x)`, by qualified name, e.g.
    "encoder.0.conv1"; the deep-supervision heads (`aux_heads.*`) are left out."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, CONV_TYPES) and name.split(".", 1)[0] != AUX_HEADS
    }


def output_channels(task: str, categories: Sequence[str]) -> int:
    """Logit channels: 1 for `binary`, background + one per category for `multiclass`."""
    return 1 if task == "binary" else 1 + len(categories)
