"""The named building blocks of the U-Net: norms, activations, upsamplers, initialisations.

Each family is a registry, so a config names a part and an ablation swaps a name. Removing a
norm is the registry value `none`, whose factory returns None ("no layer"), never a branch in
the model.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from ablate.registry import Registry

NormFactory = Callable[[int], nn.Module | None]
ActivationFactory = Callable[[], nn.Module]
UpsamplerFactory = Callable[[int, int], nn.Module]
Initializer = Callable[[nn.Module], None]

NORMS: Registry[NormFactory] = Registry("norm")
ACTIVATIONS: Registry[ActivationFactory] = Registry("activation")
UPSAMPLERS: Registry[UpsamplerFactory] = Registry("upsampling")
INITS: Registry[Initializer] = Registry("init")

DOUBLE_SUFFIX = "-double"
MAX_GROUPS = 8
CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)


def parse_norm(value: str) -> tuple[str, bool]:
    """Split a config norm value into (registry name, double placement).

    Args:
        value: `ModelConfig.norm`, e.g. "batch" (after the first conv of a block only) or
            "batch-double" (after both convs, as in the original study).

    Returns:
        The norm's registry name and whether it follows both convs of a block.

    Example:
        >>> parse_norm("instance-double")
        ('instance', True)
    """
    double = value.endswith(DOUBLE_SUFFIX)
    name = value.removesuffix(DOUBLE_SUFFIX)
    NORMS.get(name)  # fail early, with the valid names, on a typo
    return name, double


@NORMS.register("none")
def no_norm(channels: int) -> nn.Module | None:
    """No normalization layer at all."""
    return None


@NORMS.register("batch")
def batch_norm(channels: int) -> nn.Module | None:
    return nn.BatchNorm2d(channels)


@NORMS.register("instance")
def instance_norm(channels: int) -> nn.Module | None:
    return nn.InstanceNorm2d(channels, affine=True)


@NORMS.register("group")
def group_norm(channels: int) -> nn.Module | None:
    # Up to 8 groups; gcd keeps the group count a divisor of narrow or odd widths.
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)


@ACTIVATIONS.register("relu")
def relu() -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.01)


@ACTIVATIONS.register("elu")
def elu() -> nn.Module:
    return nn.ELU()


@ACTIVATIONS.register("gelu")
def gelu() -> nn.Module:
    return nn.GELU()


@ACTIVATIONS.register("silu")
def silu() -> nn.Module:
    return nn.SiLU()


@UPSAMPLERS.register("transpose")
def transpose_upsampler(in_channels: int, out_channels: int) -> nn.Module:
    """Learned 2x upsampling: a 2x2 transposed conv with stride 2."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


@UPSAMPLERS.register("bilinear")
def bilinear_upsampler(in_channels: int, out_channels: int) -> nn.Module:
    """Fixed 2x bilinear resize, then a 1x1 conv to change the width."""
    return nn.Sequential(
        OrderedDict(
            resize=nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )
    )


def _reset_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, NORM_TYPES) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _init_convs(model: nn.Module, init_weight: Callable[[nn.Parameter], object]) -> None:
    for module in model.modules():
        if isinstance(module, CONV_TYPES):
            init_weight(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@INITS.register("kaiming")
def kaiming_init(model: nn.Module) -> None:
    """He normal (fan_out, ReLU gain) on convs, zero biases, norms at identity."""
    _init_convs(model, lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"))
    _reset_norms(model)


@INITS.register("xavier")
def xavier_init(model: nn.Module) -> None:
    """Glorot uniform on convs, zero biases, norms at identity."""
    _init_convs(model, nn.init.xavier_uniform_)
    _reset_norms(model)


@INITS.register("default")
def default_init(model: nn.Module) -> None:
    """Keep PyTorch's own initialisation of every layer."""
