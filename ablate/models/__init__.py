"""The configurable U-Net (`build_model`) and its registries of named parts."""

from ablate.models.unet import UNet, build_model, conv_layers, output_channels

__all__ = ["UNet", "build_model", "conv_layers", "output_channels"]
