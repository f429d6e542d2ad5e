"""Bottlenecks (the `BOTTLENECKS` registry): what runs at the coarsest resolution.

A bottleneck maps (B, in, h, w) -> (B, out, h, w) and is built as

    bottleneck(in_channels, out_channels, *, kit, dropout)

with the network's `LayerKit` (block, norm, activation, se). `plain` is one conv block;
`aspp` is atrous spatial pyramid pooling (Chen et al. 2017, DeepLabv3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from ablate.models.blocks import LayerKit, conv_norm_act, expect_shape
from ablate.registry import Registry

ASPP_RATES = (2, 4, 6)
"""Dilations of the 3x3 branches. DeepLabv3 uses 6, 12, 18 on 33x33 maps (513 px at output
stride 16); a U-Net bottleneck is 7-14 px at 224 px, so the rates shrink with it."""


class BottleneckFactory(Protocol):
    """What a `BOTTLENECKS` entry is: a callable building the bottleneck."""

    def __call__(
        self, in_channels: int, out_channels: int, *, kit: LayerKit, dropout: float = 0.0
    ) -> nn.Module: ...


def check_bottleneck(name: str, factory: BottleneckFactory) -> None:
    """A plug-in bottleneck: built with the bottleneck signature, (2, 8, 4, 4) -> (2, 16, 4, 4)."""
    expect_shape(factory(8, 16, kit=LayerKit.from_names()), torch.randn(2, 8, 4, 4), (2, 16, 4, 4))


BOTTLENECKS: Registry[BottleneckFactory] = Registry("bottleneck", check=check_bottleneck)


@BOTTLENECKS.register("plain")
def plain_bottleneck(
    in_channels: int, out_channels: int, *, kit: LayerKit, dropout: float = 0.0
) -> nn.Module:
    """One conv block of the network's kind (plain or residual, with SE when on)."""
    return kit.conv_block(in_channels, out_channels, dropout)


class ASPP(nn.Module):
    """Parallel branches concatenated, then a 1x1 projection -> [norm] -> act -> [dropout]:

        1x1 conv; one 3x3 conv per dilation rate; image pooling (global mean -> 1x1 conv ->
        act, broadcast back). Each conv branch is conv -> [norm] -> act.

    The pooling branch has no norm: at 1x1 a batch norm sees one value per channel when the
    batch size is 1 (the EBHI-Seg paper's setting) and instance norm cannot work at all.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kit: LayerKit,
        rates: Sequence[int] = ASPP_RATES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        parts = {"norm": kit.norm, "activation": kit.activation}
        branches = [nn.Sequential(conv_norm_act(in_channels, out_channels, kernel_size=1, **parts))]
        branches += [
            nn.Sequential(conv_norm_act(in_channels, out_channels, dilation=rate, **parts))
            for rate in rates
        ]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(
            conv_norm_act(in_channels, out_channels, kernel_size=1, norm=None, activation=None)
        )
        self.pool_act = kit.activation()
        project = conv_norm_act(
            out_channels * (len(branches) + 1), out_channels, kernel_size=1, **parts
        )
        if dropout > 0:
            project["dropout"] = nn.Dropout(dropout)
        self.project = nn.Sequential(project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches]  # each (B, out, h, w)
        # A mean, not adaptive_avg_pool2d: its CUDA backward is nondeterministic.
        pooled = self.pool_act(self.pool(x.mean(dim=(2, 3), keepdim=True)))  # (B, out, 1, 1)
        outputs.append(pooled.expand_as(outputs[0]))
        return self.project(torch.cat(outputs, dim=1))


@BOTTLENECKS.register("aspp")
def aspp_bottleneck(
    in_channels: int, out_channels: int, *, kit: LayerKit, dropout: float = 0.0
) -> nn.Module:
    """ASPP with dilations ASPP_RATES; the network's norm and activation, no SE."""
    return ASPP(in_channels, out_channels, kit=kit, dropout=dropout)
