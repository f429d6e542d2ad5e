"""Conv blocks (the `BLOCKS` registry), squeeze-and-excitation, and the kit that builds them.

A block maps (B, in, h, w) -> (B, out, h, w) and is built with keyword arguments only:

    block(in_channels, out_channels, *, norm, double_norm, activation, se, dropout)

where `norm` and `activation` are factories from `layers.py`. Every level of a network (and
a plain bottleneck) is one block, so swapping `model.block` changes all of them at once. A
new block registers under a new name with that signature; `LayerKit` hands it the parts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ablate.models.layers import ACTIVATIONS, NORMS, ActivationFactory, NormFactory
from ablate.registry import Registry

SE_REDUCTION = 8
"""Squeeze-and-excitation bottleneck ratio: hidden = channels / 8 ..."""
SE_MIN_HIDDEN = 4
"""... but never fewer than 4 units, so narrow CPU-sized widths keep a usable gate."""


class BlockFactory(Protocol):
    """What a `BLOCKS` entry is: a callable building one block (usually the class itself)."""

    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormFactory,
        double_norm: bool,
        activation: ActivationFactory,
        se: bool = False,
        dropout: float = 0.0,
    ) -> nn.Module: ...


def expect_shape(module: nn.Module, x: torch.Tensor, expected: tuple[int, ...]) -> None:
    """Run `module` on `x` (eval mode, no grad) and raise ValueError unless the output is a
    tensor of shape `expected`: the contract check of a plug-in's module."""
    with torch.no_grad():
        out = module.eval()(x)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != expected:
        raise ValueError(
            f"maps an input {tuple(x.shape)} to {shape}; the contract needs {expected}"
        )


def check_block(name: str, factory: BlockFactory) -> None:
    """A plug-in block: built with the block signature, (2, 4, 8, 8) -> (2, 6, 8, 8)."""
    block = factory(
        4, 6, norm=NORMS.get("batch"), double_norm=True, activation=ACTIVATIONS.get("relu")
    )
    expect_shape(block, torch.randn(2, 4, 8, 8), (2, 6, 8, 8))


BLOCKS: Registry[BlockFactory] = Registry("block", check=check_block)


class SqueezeExcite(nn.Module):
    """Channel gating (Hu et al. 2018): global mean -> 1x1 reduce -> ReLU -> 1x1 expand ->
    sigmoid, times the input. 1x1 convs rather than linear layers keep channels_last intact."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(SE_MIN_HIDDEN, channels // SE_REDUCTION)
        self.reduce = nn.Conv2d(channels, hidden, kernel_size=1)
        self.expand = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A mean, not adaptive_avg_pool2d: its CUDA backward is nondeterministic.
        squeezed = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(squeezed))))
        return x * gate


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    *,
    norm: NormFactory | None,
    activation: ActivationFactory | None,
    index: int = 1,
    kernel_size: int = 3,
    dilation: int = 1,
) -> OrderedDict[str, nn.Module]:
    """conv{index} -> [norm{index}] -> [act{index}] as named layers; absent ones not built.

    A conv followed by a norm has no bias: the norm's shift makes it redundant.
    """
    norm_layer = norm(out_channels) if norm is not None else None
    padding = dilation * (kernel_size - 1) // 2
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers[f"conv{index}"] = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=padding,
        dilation=dilation,
        bias=norm_layer is None,
    )
    if norm_layer is not None:
        layers[f"norm{index}"] = norm_layer
    if activation is not None:
        layers[f"act{index}"] = activation()
    return layers


def two_convs(
    in_channels: int,
    out_channels: int,
    *,
    norm: NormFactory,
    double_norm: bool,
    activation: ActivationFactory,
    last_activation: bool,
) -> OrderedDict[str, nn.Module]:
    """conv3x3 -> [norm] -> act -> conv3x3 -> [norm if double] -> [act if last_activation]:
    the two convs every built-in block is made of."""
    layers = conv_norm_act(in_channels, out_channels, norm=norm, activation=activation)
    second_norm = norm if double_norm else None
    second_activation = activation if last_activation else None
    layers.update(
        conv_norm_act(
            out_channels, out_channels, norm=second_norm, activation=second_activation, index=2
        )
    )
    return layers


@BLOCKS.register("plain")
class ConvBlock(nn.Sequential):
    """conv3x3 -> [norm] -> act -> conv3x3 -> [norm if double] -> act -> [se] -> [dropout].

    Absent layers (norm `none`, se off, dropout 0) are not created, so the block's children
    are exactly its layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormFactory,
        double_norm: bool,
        activation: ActivationFactory,
        se: bool = False,
        dropout: float = 0.0,
    ) -> None:
        layers = two_convs(
            in_channels,
            out_channels,
            norm=norm,
            double_norm=double_norm,
            activation=activation,
            last_activation=True,
        )
        if se:
            layers["se"] = SqueezeExcite(out_channels)
        if dropout > 0:
            layers["dropout"] = nn.Dropout(dropout)
        super().__init__(layers)


@BLOCKS.register("residual")
class ResidualBlock(nn.Module):
    """The plain block's two convs as a residual branch (He et al. 2016, "basic block"):

        act(branch(x) + shortcut(x)) -> [dropout]
        branch:   conv3x3 -> [norm] -> act -> conv3x3 -> [norm if double] -> [se]
        shortcut: identity when in == out, else conv1x1 -> [norm]

    SE sits on the branch before the addition, as in SE-ResNet.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm: NormFactory,
        double_norm: bool,
        activation: ActivationFactory,
        se: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # The last activation comes after the addition.
        layers = two_convs(
            in_channels,
            out_channels,
            norm=norm,
            double_norm=double_norm,
            activation=activation,
            last_activation=False,
        )
        if se:
            layers["se"] = SqueezeExcite(out_channels)
        self.branch = nn.Sequential(layers)
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(
                conv_norm_act(in_channels, out_channels, norm=norm, activation=None, kernel_size=1)
            )
        )
        self.act = activation()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.branch(x) + self.shortcut(x))  # (B, out, h, w)
        return out if self.dropout is None else self.dropout(out)


@dataclass(frozen=True)
class LayerKit:
    """The resolved parts every block of one network shares; `conv_block` builds one.

    Example:
        >>> kit = LayerKit.from_names(block="residual", norm="batch", activation="relu")
        >>> kit.conv_block(3, 8)(torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    block: BlockFactory
    norm: NormFactory
    double_norm: bool
    activation: ActivationFactory
    se: bool

    @classmethod
    def from_names(
        cls,
        *,
        block: str = "plain",
        norm: str = "batch",
        double_norm: bool = True,
        activation: str = "relu",
        se: bool = False,
    ) -> LayerKit:
        """Resolve registry names once; an unknown name raises UserError with the valid ones."""
        return cls(
            block=BLOCKS.get(block),
            norm=NORMS.get(norm),
            double_norm=double_norm,
            activation=ACTIVATIONS.get(activation),
            se=se,
        )

    def conv_block(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> nn.Module:
        """One block (in_channels -> out_channels) with this kit's parts."""
        return self.block(
            in_channels,
            out_channels,
            norm=self.norm,
            double_norm=self.double_norm,
            activation=self.activation,
            se=self.se,
            dropout=dropout,
        )
