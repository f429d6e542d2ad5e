"""Additive attention gates on U-Net skip connections (Oktay et al. 2018, "Attention U-Net")."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class AttentionGate(nn.Module):
    """Weight each skip pixel by a coefficient in (0, 1) computed with the coarser decoder
    features as gating signal:

        q     = relu(theta(skip) + phi(gate))   theta: 2x2 conv, stride 2 (to the gate's grid)
        alpha = sigmoid(psi(q))                 psi: 1x1 conv to one channel
        out   = skip * upsample(alpha)          bilinear, back to the skip's grid

    Args:
        skip_channels: channels of the encoder features on the skip (w_k).
        gate_channels: channels of the decoder features one level deeper (w_{k+1}).
        inter_channels: channels of the joint space; None: half of `skip_channels` (>= 1).
    """

    def __init__(
        self, skip_channels: int, gate_channels: int, inter_channels: int | None = None
    ) -> None:
        super().__init__()
        inter = inter_channels or max(1, skip_channels // 2)
        self.theta = nn.Conv2d(skip_channels, inter, kernel_size=2, stride=2, bias=False)
        self.phi = nn.Conv2d(gate_channels, inter, kernel_size=1)
        self.psi = nn.Conv2d(inter, 1, kernel_size=1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """skip (B, w_k, 2h, 2w), gate (B, w_{k+1}, h, w) -> gated skip (B, w_k, 2h, 2w)."""
        joint = torch.relu(self.theta(skip) + self.phi(gate))  # (B, inter, h, w)
        alpha = torch.sigmoid(self.psi(joint))  # (B, 1, h, w)
        alpha = F.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return skip * alpha
