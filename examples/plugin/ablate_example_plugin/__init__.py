"""An example ablate plug-in: a dilated conv block, the log-cosh Dice loss and a removal.

ablate finds it through the entry point `example` of the group `ablate.plugins` (see
pyproject.toml) and calls `register` once per process; a grid then names the new parts like
built-ins: `model.block: dilated`, `train.loss: log_cosh_dice`, `ablations.remove: [dilation]`.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.grid.components import REMOVABLE, ComponentError, Removal
from ablate.models.blocks import BLOCKS, conv_norm_act
from ablate.plugins import PluginContext
from ablate.train.losses import LOSSES, dice_loss

DILATION = 2


class DilatedBlock(nn.Sequential):
    """The plain block with both 3x3 convs dilated by 2: a 9x9 receptive field per block
    instead of 5x5, at the same cost. Same signature as every block of `BLOCKS`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm,
        double_norm: bool,
        activation,
        se: bool = False,
        dropout: float = 0.0,
    ) -> None:
        layers = conv_norm_act(
            in_channels, out_channels, norm=norm, activation=activation, dilation=DILATION
        )
        second_norm = norm if double_norm else None
        layers.update(
            conv_norm_act(
                out_channels,
                out_channels,
                norm=second_norm,
                activation=activation,
                index=2,
                dilation=DILATION,
            )
        )
        if dropout > 0:
            layers["dropout"] = nn.Dropout(dropout)
        super().__init__(layers)


def log_cosh_dice(logits: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """log(cosh(1 - Dice)) (Jadon 2020): the Dice loss, smoothed near zero."""
    return torch.log(torch.cosh(dice_loss(logits, target, task)))


def _remove_dilation(recipe) -> dict:
    """The baseline's dilated blocks back to plain ones."""
    if recipe.model.block != "dilated":
        raise ComponentError(
            f"cannot remove 'dilation': the baseline has block: {recipe.model.block}"
        )
    return {"model.block": "plain"}


def register(plugin: PluginContext) -> None:
    """Add the block, the loss and the removal to ablate's registries."""
    plugin.add(BLOCKS, "dilated", DilatedBlock)
    plugin.add(LOSSES, "log_cosh_dice", log_cosh_dice)
    plugin.add(
        REMOVABLE,
        "dilation",
        Removal(
            "dilation",
            "plain conv blocks instead of dilated ones (model.block: plain)",
            _remove_dilation,
        ),
    )
