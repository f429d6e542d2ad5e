"""SegNet (Badrinarayanan et al. 2017) on the same levels and parts as the U-Net.

Layout for widths [w1, ..., wL, wB] (depth L = len(widths) - 1):

    encoder level k (1..L): block(w_{k-1} -> w_k), then 2x2 max pool that keeps where each
                            maximum came from (the pooling indices)
    bottleneck:             BOTTLENECKS entry (w_L -> wB)
    decoder level k (L..1): 1x1 conv w_{k+1} -> w_k (only when the widths differ), max-unpool
                            with level k's indices (each value back at its maximum's
                            position, zeros elsewhere), block(w_k -> w_k)
    head:                   1x1 conv w_1 -> out_channels

No encoder features are concatenated into the decoder: only the pooling indices cross over. The
original SegNet reduces the width with the last conv of each decoder level; the 1x1 conv
before unpooling does it here, so the same `widths` give U-Net and SegNet the same levels and
blocks and the comparison isolates skips-and-upsampling versus index unpooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ablate.models.blocks import LayerKit
from ablate.models.bottlenecks import BOTTLENECKS
from ablate.models.encoder_decoder import EncoderDecoder
from ablate.models.layers import INITS


def pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max pool of (B, C, H, W) and where each maximum was: flat indices h * W + w into
    each (H, W) plane, int64 (B, C, H/2, W/2)."""
    return F.max_pool2d(x, 2, return_indices=True)


def unpool(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Max-unpool (B, C, h, w) into (B, C, 2h, 2w): each value back at its maximum's
    position, zeros elsewhere.

    Equal to F.max_unpool2d, written as a scatter: PyTorch flags max_unpool2d as
    nondeterministic (CPU runs here use deterministic algorithms, which would warn on every
    call), while a scatter of unique indices is deterministic on CPU and CUDA alike.
    """
    batch, channels, height, width = x.shape
    planes = x.new_zeros(batch, channels, 4 * height * width)
    planes = planes.scatter(2, indices.flatten(2), x.flatten(2))
    return planes.view(batch, channels, 2 * height, 2 * width)


class UnpoolLevel(nn.Module):
    """One SegNet decoder level: [1x1 conv to the level's width], unpool, block."""

    def __init__(self, in_channels: int, out_channels: int, block: nn.Module) -> None:
        super().__init__()
        self.project = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else None
        )
        self.block = block

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """x (B, w_{k+1}, h, w), pooling indices (B, w_k, h, w) -> (B, w_k, 2h, 2w)."""
        if self.project is not None:
            x = self.project(x)  # (B, w_k, h, w)
        return self.block(unpool(x, indices))


class SegNet(EncoderDecoder):
    """SegNet with the U-Net's named parts (block, norm, activation, SE, bottleneck, deep
    supervision); no skip connections, so no skips, attention or upsampling arguments.

    Example:
        >>> model = SegNet(widths=[8, 16, 32], out_channels=1)
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
        dropout: float = 0.0,
        init: str = "kaiming",
        block: str = "plain",
        se: bool = False,
        bottleneck: str = "plain",
        deep_supervision: bool = False,
    ) -> None:
        kit = LayerKit.from_names(
            block=block, norm=norm, double_norm=double_norm, activation=activation, se=se
        )
        make_bottleneck = BOTTLENECKS.get(bottleneck)
        initialize = INITS.get(init)
        super().__init__(widths)
        depth, widths = self.depth, self.widths
        inputs = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(kit.conv_block(inputs[k], widths[k]) for k in range(depth))
        self.bottleneck = make_bottleneck(widths[-2], widths[-1], kit=kit, dropout=dropout)
        self.decoder = nn.ModuleList(
            UnpoolLevel(widths[k + 1], widths[k], kit.conv_block(widths[k], widths[k], dropout))
            for k in range(depth)
        )
        self._build_heads(out_channels, deep_supervision)
        initialize(self)

    def decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder outputs, level 1 first: (B, w_k, h / 2**(k-1), w / 2**(k-1)) for level k."""
        indices = []
        for level in self.encoder:
            x, where = pool_with_indices(level(x))
            indices.append(where)
        x = self.bottleneck(x)
        outputs = []
        for level, where in zip(reversed(self.decoder), reversed(indices), strict=True):
            x = level(x, where)
            outputs.append(x)
        return outputs[::-1]
