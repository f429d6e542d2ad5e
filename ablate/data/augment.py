"""Training-time augmentation: a registry of albumentations ops and their seeding.

Each op of `AugmentConfig.ops` is built with its probability into one `albumentations.Compose`
per run. Geometric ops (rotate, flips, elastic) move the mask with the image (nearest
neighbour, so it stays binary); colour ops touch the image only.

Ops in `CHANNEL_AGNOSTIC` work on any number of channels; every other op (rgb_shift,
color_jitter, a plug-in's op) expects RGB, so with a 1-channel input mode (`augment.input`)
the training loader augments the RGB image and converts it afterwards (`needs_rgb`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import albumentations as A
import numpy as np

from ablate.config import AugmentConfig
from ablate.registry import Registry

# name -> factory(probability, image side in pixels) -> albumentations transform
AugmentFactory = Callable[[float, int], A.BasicTransform]
"""(probability, image side in pixels) -> an albumentations transform."""


def check_augmentation(name: str, factory: AugmentFactory) -> None:
    """A plug-in op: at probability 1 on a (32, 32, 3) uint8 image and its (32, 32) mask it
    keeps both shapes and the image's dtype (plug-in ops always see RGB)."""
    generator = np.random.default_rng(0)
    image = generator.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = (generator.random((32, 32)) > 0.5).astype(np.uint8)
    out = A.Compose([factory(1.0, 32)])(image=image, mask=mask)
    if out["image"].shape != image.shape or out["image"].dtype != np.uint8:
        raise ValueError(
            f"turns a (32, 32, 3) uint8 image into {out['image'].shape} {out['image'].dtype}"
        )
    if out["mask"].shape != mask.shape:
        raise ValueError(f"turns a (32, 32) mask into {out['mask'].shape}")


AUGMENTATIONS: Registry[AugmentFactory] = Registry("augmentation", check=check_augmentation)
CHANNEL_AGNOSTIC = ("rotate", "hflip", "vflip", "blur", "elastic")
"""Ops that act the same on 1 or 3 channels; blur on a converted channel is a blur too."""


@AUGMENTATIONS.register("rotate")
def rotate(p: float, size: int) -> A.BasicTransform:
    """Rotation by a random multiple of 90 degrees.

    Histology tiles have no preferred orientation, and right-angle turns need neither
    interpolation nor border filling, so no artificial black corners enter the training set.
    """
    return A.RandomRotate90(p=p)


@AUGMENTATIONS.register("hflip")
def hflip(p: float, size: int) -> A.BasicTransform:
    return A.HorizontalFlip(p=p)


@AUGMENTATIONS.register("vflip")
def vflip(p: float, size: int) -> A.BasicTransform:
    return A.VerticalFlip(p=p)


@AUGMENTATIONS.register("rgb_shift")
def rgb_shift(p: float, size: int) -> A.BasicTransform:
    return A.RGBShift(r_shift_limit=15, g_shift_limit=15, b_shift_limit=15, p=p)


@AUGMENTATIONS.register("blur")
def blur(p: float, size: int) -> A.BasicTransform:
    return A.Blur(blur_limit=(3, 5), p=p)


@AUGMENTATIONS.register("color_jitter")
def color_jitter(p: float, size: int) -> A.BasicTransform:
    """Brightness/contrast/saturation +-20%, hue +-0.05: stain variation, not a recolouring
    (albumentations' default hue range of +-0.5 would turn H&E green)."""
    return A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=p)


@AUGMENTATIONS.register("elastic")
def elastic(p: float, size: int) -> A.BasicTransform:
    """Mild elastic warp, like tissue deformed on the slide: the displacement field is
    smoothed over size/20 px; at 224 px pixels move 2 px on average, 5 px at most."""
    sigma = max(2.0, size / 20)
    alpha = (size / 60) * sigma / 0.163
    return A.ElasticTransform(alpha=alpha, sigma=sigma, p=p)


def build_augmentation(config: AugmentConfig, image_size: int) -> A.Compose | None:
    """One Compose of the config's ops with probability > 0, in registry order.

    Registry order (not the YAML's key order) makes two configs with the same ops build the
    same pipeline. Returns None when no op is on.

    Example:
        >>> compose = build_augmentation(AugmentConfig(ops={"hflip": 0.5}), image_size=64)
    """
    ops = [
        AUGMENTATIONS.get(name)(config.ops[name], image_size)
        for name in AUGMENTATIONS.names()
        if config.ops.get(name, 0.0) > 0.0
    ]
    unknown = sorted(set(config.ops) - set(AUGMENTATIONS.names()))
    if unknown:
        AUGMENTATIONS.get(unknown[0])  # raises UserError listing the valid names
    return A.Compose(ops) if ops else None


def needs_rgb(config: AugmentConfig) -> bool:
    """Whether an op that expects RGB input can fire (probability > 0)."""
    return any(p > 0 and op not in CHANNEL_AGNOSTIC for op, p in config.ops.items())


def reseed(compose: A.Compose, key: Sequence[int]) -> None:
    """Seed `compose` and its ops from `key` (e.g. (run seed, epoch, sample)).

    Every op shares one NumPy and one Python stream and draws from it in turn, so two ops
    with the same probability decide independently. (`Compose.set_random_seed` would give
    every op its own generator seeded alike: hflip and vflip would always fire together;
    a generator per op costs ~1 ms per image.)
    """
    generator = np.random.default_rng([int(k) % 2**64 for k in key])
    compose.set_random_state(generator, random.Random(int(generator.integers(2**63))))
