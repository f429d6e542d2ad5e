"""A configurable U-Net whose parts (norm, activation, upsampling, skips) come from registries.

Layout for widths [w1, ..., wL, wB] (depth L = len(widths) - 1):

    encoder level k (1..L): ConvBlock(w_{k-1} -> w_k), then 2x2 max pool
    bottleneck:             ConvBlock(w_L -> wB)
    decoder level k (L..1): upsample (w_{k+1} -> w_k), concat the encoder's level-k output
                            when skip k is on, ConvBlock(2 w_k or w_k -> w_k)
    head:                   1x1 conv w_1 -> out_channels

All 3x3 convs use padding 1, so the logits have the input's height and width; both must be
divisible by 2**depth.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ablate.config import ModelConfig
from ablate.models.layers import (
    ACTIVATIONS,
    CONV_TYPES,
    INITS,
    NORMS,
    UPSAMPLERS,
    ActivationFactory,
    NormFactory,
    parse_norm,
)


class ConvBlock(nn.Sequential):
    """conv3x3 -> [norm] -> act -> conv3x3 -> [norm if double] -> act -> [dropout].

    A conv followed by a norm has no bias: the norm's shift makes it redundant. Absent layers
    (norm `none`, dropout 0) are not created, so the block's children are exactly its layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormFactory,
        double_norm: bool,
        activation: ActivationFactory,
        dropout: float = 0.0,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for index, wants_norm in ((1, True), (2, double_norm)):
            norm_layer = norm(out_channels) if wants_norm else None
            layers[f"conv{index}"] = nn.Conv2d(
                channels, out_channels, kernel_size=3, padding=1, bias=norm_layer is None
            )
            if norm_layer is not None:
                layers[f"norm{index}"] = norm_layer
            layers[f"act{index}"] = activation()
            channels = out_channels
        if dropout > 0:
            layers["dropout"] = nn.Dropout(dropout)
        super().__init__(layers)


class DecoderLevel(nn.Module):
    """Upsample the deeper features, join the skip (if any), and convolve."""

    def __init__(self, up: nn.Module, block: ConvBlock, skip: bool) -> None:
        super().__init__()
        self.up = up
        self.block = block
        self.skip = skip

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, w_k, 2h, 2w)
        if self.skip:
            x = torch.cat([skip, x], dim=1)  # (B, 2 w_k, 2h, 2w)
        return self.block(x)


class UNet(nn.Module):
    """U-Net with named, swappable parts.

    Args:
        widths: channels per level, shallow to deep; the last is the bottleneck, so the
            depth (encoder levels, skip connections) is len(widths) - 1.
        out_channels: channels of the logits (1 for binary, 1 + categories for multiclass).
        in_channels: input image channels.
        norm: a NORMS name ("none", "batch", "instance", "group").
        double_norm: norm after both convs of a block (True) or after the first only.
        activation: an ACTIVATIONS name.
        upsampling: an UPSAMPLERS name.
        skips: one flag per encoder level (level 1 first); None means all on.
        dropout: dropout probability in the bottleneck and decoder blocks; 0 adds no layer.
        init: an INITS name, applied once after the layers are built.

    Example:
        >>> model = UNet(widths=[8, 16, 32], out_channels=1, skips=[False, True])
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        *,
        widths: Sequence[int],
        out_channels: int,
        in_channels: int = 3,
        norm: str = "batch",
        double_norm: bool = True,
        activation: str = "relu",
        upsampling: str = "transpose",
        skips: Sequence[bool] | None = None,
        dropout: float = 0.0,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        norm_factory = NORMS.get(norm)
        activation_factory = ACTIVATIONS.get(activation)
        upsampler = UPSAMPLERS.get(upsampling)
        initialize = INITS.get(init)
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {list(widths)}")
        depth = len(widths) - 1
        skips = [True] * depth if skips is None else list(skips)
        if len(skips) != depth:
            raise ValueError(f"skips has {len(skips)} flags for {depth} encoder levels")

        self.widths = list(widths)
        self.depth = depth
        self.skips = skips

        def block(cin: int, cout: int, drop: float) -> ConvBlock:
            return ConvBlock(
                cin,
                cout,
                norm=norm_factory,
                double_norm=double_norm,
                activation=activation_factory,
                dropout=drop,
            )

        inputs = [in_channels, *self.widths[:-1]]
        self.encoder = nn.ModuleList(block(inputs[k], self.widths[k], 0.0) for k in range(depth))
        self.bottleneck = block(self.widths[-2], self.widths[-1], dropout)
        self.decoder = nn.ModuleList(
            DecoderLevel(
                up=upsampler(self.widths[k + 1], self.widths[k]),
                block=block(self.widths[k] * (2 if skips[k] else 1), self.widths[k], dropout),
                skip=skips[k],
            )
            for k in range(depth)
        )
        self.head = nn.Conv2d(self.widths[0], out_channels, kernel_size=1)
        initialize(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> logits (B, out_channels, h, w); h, w divisible by 2**depth."""
        self._check_size(x)
        features = []
        for level in self.encoder:
            x = level(x)
            features.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for level, skip in zip(reversed(self.decoder), reversed(features), strict=True):
            x = level(x, skip)
        return self.head(x)

    def _check_size(self, x: torch.Tensor) -> None:
        factor = 2**self.depth
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(
                f"input size {height}x{width} is not divisible by 2**depth = {factor} "
                f"(depth {self.depth} from widths {self.widths}); choose train.image_size "
                f"as a multiple of {factor}"
            )

    def module_groups(self) -> dict[str, list[nn.Module]]:
        """Named groups of modules for pruning and analysis.

        "encoder-k", "bottleneck", "decoder-k" (its upsampler included) and "head" partition
        the network; "low-level" (encoder levels 1..ceil(L/2)) and "high-level" (the deeper
        encoder levels and the bottleneck) overlap them.
        """
        groups: dict[str, list[nn.Module]] = {}
        for k, level in enumerate(self.encoder, start=1):
            groups[f"encoder-{k}"] = [level]
        groups["bottleneck"] = [self.bottleneck]
        for k, level in enumerate(self.decoder, start=1):
            groups[f"decoder-{k}"] = [level]
        groups["head"] = [self.head]
        shallow = math.ceil(self.depth / 2)
        groups["low-level"] = list(self.encoder[:shallow])
        groups["high-level"] = [*self.encoder[shallow:], self.bottleneck]
        return groups


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.ConvTranspose2d]:
    """Every conv (and transposed conv) of `model` by qualified name, e.g. "encoder.0.conv1"."""
    modules = model.named_modules()
    return {name: module for name, module in modules if isinstance(module, CONV_TYPES)}


def output_channels(task: str, categories: Sequence[str]) -> int:
    """Logit channels: 1 for `binary`, background + one per category for `multiclass`."""
    return 1 if task == "binary" else 1 + len(categories)


def build_model(config: ModelConfig, out_channels: int) -> UNet:
    """The U-Net a `ModelConfig` describes; the one place config turns into arguments.

    Args:
        config: the run's model section.
        out_channels: 1 for `task: binary`, 1 + categories for `task: multiclass`.

    Example:
        >>> build_model(ModelConfig(widths=[8, 16, 32], norm="instance"), out_channels=1).depth
        2
    """
    norm, double_norm = parse_norm(config.norm)
    return UNet(
        widths=config.widths,
        out_channels=out_channels,
        norm=norm,
        double_norm=double_norm,
        activation=config.activation,
        upsampling=config.upsampling,
        skips=[config.skip_enabled(level) for level in range(1, config.depth + 1)],
        dropout=config.dropout,
        init=config.init,
    )
