"""A configurable U-Net whose parts (block, norm, activation, upsampling, bottleneck, skips,
attention gates, deep supervision) come from registries and flags.

Layout for widths [w1, ..., wL, wB] (depth L = len(widths) - 1):

    encoder level k (1..L): block(w_{k-1} -> w_k), then 2x2 max pool
    bottleneck:             BOTTLENECKS entry (w_L -> wB): a block, or ASPP
    decoder level k (L..1): upsample (w_{k+1} -> w_k); when skip k is on, the encoder's
                            level-k output (gated by attention when on) is concatenated;
                            block(2 w_k or w_k -> w_k)
    head:                   1x1 conv w_1 -> out_channels
    aux heads (optional):   1x1 conv on decoder levels 2..L (deep supervision)

All 3x3 convs use padding 1, so the logits have the input's height and width; both must be
divisible by 2**depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ablate.models.attention import AttentionGate
from ablate.models.blocks import LayerKit
from ablate.models.bottlenecks import BOTTLENECKS
from ablate.models.encoder_decoder import EncoderDecoder
from ablate.models.layers import INITS, UPSAMPLERS


class DecoderLevel(nn.Module):
    """Upsample the deeper features, join the skip (gated, if attention is on), convolve."""

    def __init__(
        self, up: nn.Module, block: nn.Module, skip: bool, gate: AttentionGate | None = None
    ) -> None:
        super().__init__()
        self.up = up
        self.gate = gate
        self.block = block
        self.skip = skip

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, w_{k+1}, h, w), skip (B, w_k, 2h, 2w) -> (B, w_k, 2h, 2w)."""
        up = self.up(x)  # (B, w_k, 2h, 2w)
        if self.skip:
            if self.gate is not None:
                skip = self.gate(skip, x)  # the coarser decoder features gate the skip
            up = torch.cat([skip, up], dim=1)  # (B, 2 w_k, 2h, 2w)
        return self.block(up)


class UNet(EncoderDecoder):
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
        block: a BLOCKS name ("plain", "residual").
        se: squeeze-and-excitation at the end of every block.
        attention: an attention gate on every skip connection that is on.
        bottleneck: a BOTTLENECKS name ("plain", "aspp").
        deep_supervision: auxiliary heads on decoder levels 2..depth (`forward_with_aux`).

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
        block: str = "plain",
        se: bool = False,
        attention: bool = False,
        bottleneck: str = "plain",
        deep_supervision: bool = False,
    ) -> None:
        kit = LayerKit.from_names(
            block=block, norm=norm, double_norm=double_norm, activation=activation, se=se
        )
        upsampler = UPSAMPLERS.get(upsampling)
        make_bottleneck = BOTTLENECKS.get(bottleneck)
        initialize = INITS.get(init)
        super().__init__(widths)
        depth, widths = self.depth, self.widths
        skips = [True] * depth if skips is None else list(skips)
        if len(skips) != depth:
            raise ValueError(f"skips has {len(skips)} flags for {depth} encoder levels")
        self.skips = skips

        inputs = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(kit.conv_block(inputs[k], widths[k]) for k in range(depth))
        self.bottleneck = make_bottleneck(widths[-2], widths[-1], kit=kit, dropout=dropout)
        self.decoder = nn.ModuleList(
            DecoderLevel(
                up=upsampler(widths[k + 1], widths[k]),
                block=kit.conv_block(widths[k] * (2 if skips[k] else 1), widths[k], dropout),
                skip=skips[k],
                gate=AttentionGate(widths[k], widths[k + 1]) if attention and skips[k] else None,
            )
            for k in range(depth)
        )
        self._build_heads(out_channels, deep_supervision)
        initialize(self)

    def decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder outputs, level 1 first: (B, w_k, h / 2**(k-1), w / 2**(k-1)) for level k."""
        features = []
        for level in self.encoder:
            x = level(x)
            features.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        outputs = []
        for level, skip in zip(reversed(self.decoder), reversed(features), strict=True):
            x = level(x, skip)
            outputs.append(x)
        return outputs[::-1]
