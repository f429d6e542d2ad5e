"""What U-Net and SegNet share: levels, the size check, heads, module groups.

An `EncoderDecoder` has `encoder` (level k at index k-1), `bottleneck`, `decoder` (level k at
index k-1, run deep to shallow), a 1x1 `head`, and with deep supervision `aux_heads`.
Subclasses build those and implement `decode`, the decoder's outputs level by level.

Two entry points, one contract: `model(x)` returns the main logits only (evaluation,
prediction and pruning call it); `model.forward_with_aux(x)` returns them together with the
auxiliary logits, for the training loop's deep-supervision loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

AUX_HEADS = "aux_heads"
"""Attribute (and qualified-name prefix) of the deep-supervision heads. They are off the
path of `model(x)`, so pruning and per-layer analyses leave them out."""


class AuxHeads(nn.Module):
    """Deep supervision: a 1x1 conv head per decoder level 2..depth, upsampled (bilinear)
    to the main logits' size, so every auxiliary loss term sees the full-size target."""

    def __init__(self, widths: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Conv2d(width, out_channels, kernel_size=1) for width in widths
        )

    def forward(self, features: Sequence[torch.Tensor], size: torch.Size) -> list[torch.Tensor]:
        """Decoder features of levels 2..depth -> logits (B, out_channels, *size) each."""
        return [
            F.interpolate(head(feature), size=size, mode="bilinear", align_corners=False)
            for head, feature in zip(self.heads, features, strict=True)
        ]


class EncoderDecoder(nn.Module):
    """Base of the encoder-decoder networks; see the module docstring for the layout."""

    encoder: nn.ModuleList
    bottleneck: nn.Module
    decoder: nn.ModuleList
    head: nn.Conv2d

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {list(widths)}")
        self.widths = list(widths)
        self.depth = len(widths) - 1
        self.aux_heads: AuxHeads | None = None

    def _build_heads(self, out_channels: int, deep_supervision: bool) -> None:
        """The main head on decoder level 1; auxiliary heads on levels 2..depth if asked."""
        self.head = nn.Conv2d(self.widths[0], out_channels, kernel_size=1)
        if deep_supervision:
            if self.depth < 2:
                raise ValueError("deep supervision needs depth >= 2 (heads on levels 2..depth)")
            self.aux_heads = AuxHeads(self.widths[1:-1], out_channels)

    @property
    def deep_supervision(self) -> bool:
        """Whether `forward_with_aux` returns auxiliary logits."""
        return self.aux_heads is not None

    def decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder outputs, level 1 (full size, w_1 channels) first."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> logits (B, out_channels, h, w); h, w divisible by 2**depth."""
        self._check_size(x)
        return self.head(self.decode(x)[0])

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(main logits, auxiliary logits of decoder levels 2..depth, each at full size).

        The list is empty without deep supervision.
        """
        self._check_size(x)
        features = self.decode(x)
        logits = self.head(features[0])
        if self.aux_heads is None:
            return logits, []
        return logits, self.aux_heads(features[1:], logits.shape[-2:])

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

        "encoder-k", "bottleneck", "decoder-k" (its upsampler and attention gate included)
        and "head" partition the network's path to the logits (the deep-supervision heads
        are not on it); "low-level" (encoder levels 1..ceil(L/2)) and "high-level" (the
        deeper encoder levels and the bottleneck) overlap them.
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
