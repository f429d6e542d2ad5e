"""The configurable networks (`build_model`: U-Net, SegNet) and their registries of named
parts: ARCHS (build.py), BLOCKS (blocks.py), BOTTLENECKS (bottlenecks.py), NORMS,
ACTIVATIONS, UPSAMPLERS, INITS (layers.py)."""

from ablate.models.build import ARCHS, build_model, conv_layers, output_channels
from ablate.models.encoder_decoder import EncoderDecoder
from ablate.models.segnet import SegNet
from ablate.models.unet import UNet

__all__ = [
    "ARCHS",
    "EncoderDecoder",
    "SegNet",
    "UNet",
    "build_model",
    "conv_layers",
    "output_channels",
]
