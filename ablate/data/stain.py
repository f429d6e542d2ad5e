"""Stain normalisation of H&E images: Macenko and Reinhard, as pure numpy functions.

A normaliser is fitted on a set of reference images (a run's TRAINING split only, so no
test image shapes what the network sees) and then maps any image's colours onto that
reference. Both methods are implemented from their papers:

- Macenko et al. 2009, "A method for normalizing histology slides for quantitative
  analysis": optical density OD = log10(255 / I); pixels whose OD intensity (the length
  of their OD vector) is below 0.15 are background; the plane of the two largest
  eigenvectors of the tissue pixels' OD covariance holds the stains; each pixel's angle in
  that plane is taken, and the 1st and 99th angle percentiles give the two stain vectors
  (hematoxylin: the one absorbing more red). Stain concentrations are the least-squares
  solution of OD = stains @ C; their 99th percentile is the image's "maximum". An image is
  normalised by estimating its own stains and maxima, rescaling its concentrations to the
  reference maxima and rebuilding it with the reference stains.
- Reinhard et al. 2001, "Color transfer between images": RGB -> LMS -> log10 -> l-alpha-beta
  (decorrelated opponent axes); each channel's mean and standard deviation are moved to the
  reference's, then the inverse transform.

A reference is estimated from at most `MAX_FIT_PIXELS` pixels, taken with a fixed stride from
every reference image, so fitting is deterministic and bounded whatever the split's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ablate.registry import Registry

MAX_FIT_PIXELS = 2_000_000
"""Pixels a reference is estimated from (a stride sample of every reference image)."""
BACKGROUND_OD = 0.15
"""Macenko's transparency threshold on a pixel's OD intensity (vector length). A threshold
on each channel instead would drop pure eosin, which absorbs little red light."""
ANGLE_PERCENTILE = 1.0
"""Macenko's robust extremes: the 1st and 99th percentile of the pixels' angles."""
MAX_PERCENTILE = 99.0
"""Macenko's robust maximum concentration per stain."""
MIN_TISSUE_PIXELS = 100
"""Fewer tissue pixels than this: no stain estimate, the image is left as it is."""
CHUNK = 32
"""Images converted at once: bounds the float working copies."""

# OD of every uint8 value: I = 0 is treated as 1 (log of zero), I = 255 is OD 0.
_OD_TABLE = (np.log10(255.0) - np.log10(np.maximum(np.arange(256.0), 1.0))).astype(np.float32)

# Reinhard's RGB -> LMS matrix and the log-LMS <-> l-alpha-beta transforms.
_RGB_TO_LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]]
)
_LAB_TO_LMS = np.linalg.inv(_LMS_TO_LAB)
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS)
_LOG_FLOOR = 1.0 / 255.0
"""Smallest LMS value before log10: black pixels stay finite."""


class StainNormalizer(Protocol):
    """A fitted normaliser: (N, H, W, 3) uint8 -> (N, H, W, 3) uint8, image by image."""

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


StainFit = Callable[[np.ndarray], StainNormalizer]
"""Fits a normaliser on reference images (N, H, W, 3) uint8."""

STAIN_NORMS: Registry[StainFit] = Registry("stain normalisation")


def fit_stain_norm(method: str, images: np.ndarray) -> StainNormalizer | None:
    """The normaliser `method` fitted on `images`; None for `none`.

    Example:
        >>> normalize = fit_stain_norm("macenko", data.images[split.train])
        >>> normalize(data.images[:4]).shape
        (4, 224, 224, 3)
    """
    if method == "none":
        return None
    return STAIN_NORMS.get(method)(images)


def sample_pixels(images: np.ndarray, limit: int = MAX_FIT_PIXELS) -> np.ndarray:
    """(P, 3) uint8: every k-th pixel of every image, k chosen so P <= limit."""
    total = images.shape[0] * images.shape[1] * images.shape[2]
    stride = max(1, -(-total // limit))
    parts = [image.reshape(-1, 3)[::stride] for image in images]
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.uint8)


def optical_density(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> float32 OD = log10(255 / max(I, 1)), per channel."""
    return _OD_TABLE[pixels]


def _tissue_mask(od: np.ndarray) -> np.ndarray:
    """(P,) bool: rows of (P, 3) OD that are not background (OD intensity >= BACKGROUND_OD)."""
    return np.einsum("pc,pc->p", od, od) >= BACKGROUND_OD**2


def macenko_stains(od: np.ndarray) -> np.ndarray | None:
    """(3, 2) unit stain vectors (hematoxylin, eosin) of tissue OD rows (P, 3); None when
    there are too few tissue pixels for an estimate."""
    if len(od) < MIN_TISSUE_PIXELS:
        return None
    _, vectors = np.linalg.eigh(np.cov(od, rowvar=False).astype(np.float64))
    plane = vectors[:, 1:]  # (3, 2): the two largest eigenvalues (eigh sorts ascending)
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into positive OD
    projected = od @ plane.astype(od.dtype)  # (P, 2)
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    stains = np.stack(
        [plane @ np.array([np.cos(angle), np.sin(angle)]) for angle in (low, high)], axis=1
    )
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    if stains[0, 0] < stains[0, 1]:  # hematoxylin absorbs more red than eosin
        stains = stains[:, ::-1]
    return stains


def _concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """(P, 2) least-squares stain amounts of OD rows (P, 3) for stain vectors (3, 2)."""
    return od @ np.linalg.pinv(stains).T.astype(od.dtype)


def _estimate(od: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(stains, every row's concentrations, robust maxima) of OD rows; None without tissue."""
    tissue = _tissue_mask(od)
    stains = macenko_stains(od[tissue])
    if stains is None:
        return None
    concentrations = _concentrations(od, stains)
    maxima = np.percentile(concentrations[tissue], MAX_PERCENTILE, axis=0)
    return stains, concentrations, maxima


@dataclass(frozen=True)
class Macenko:
    """A Macenko reference: stain vectors (3, 2) and robust maximum concentrations (2,)."""

    stains: np.ndarray
    max_concentrations: np.ndarray

    @classmethod
    def fit(cls, images: np.ndarray) -> Macenko:
        """The reference of `images` (N, H, W, 3) uint8 (pooled, stride-sampled pixels).

        Raises:
            ValueError: the images hold too few tissue pixels for a stain estimate.
        """
        estimate = _estimate(optical_density(sample_pixels(images)))
        if estimate is None:
            raise ValueError(
                f"stain_norm macenko: the reference images have fewer than "
                f"{MIN_TISSUE_PIXELS} tissue pixels (OD intensity >= {BACKGROUND_OD})"
            )
        stains, _, maxima = estimate
        return cls(stains, maxima)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.normalize_one(image) for image in images]) if len(images) else images

    def normalize_one(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 rebuilt with the reference stains; unchanged when the image has
        too few tissue pixels to estimate its own stains (mostly background)."""
        estimate = _estimate(optical_density(image.reshape(-1, 3)))
        if estimate is None:
            return image
        _, concentrations, maxima = estimate
        scale = (self.max_concentrations / np.maximum(maxima, 1e-6)).astype(np.float32)
        rebuilt = (concentrations * scale) @ self.stains.T.astype(np.float32)  # (P, 3) OD
        pixels = np.float32(255.0) * np.power(np.float32(10.0), -rebuilt)
        return _to_uint8(pixels).reshape(image.shape)


def _to_lab(pixels: np.ndarray) -> np.ndarray:
    """(P, 3) uint8 RGB -> l-alpha-beta, float32 (ample for 8-bit pixels)."""
    lms = pixels.astype(np.float32) @ (_RGB_TO_LMS.T / 255.0).astype(np.float32)
    return np.log10(np.maximum(lms, np.float32(_LOG_FLOOR))) @ _LMS_TO_LAB.T.astype(np.float32)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    """l-alpha-beta (P, 3) -> RGB on the 0..255 scale (unclipped), float32."""
    lms = np.power(np.float32(10.0), lab.astype(np.float32) @ _LAB_TO_LMS.T.astype(np.float32))
    return lms @ (255.0 * _LMS_TO_RGB.T).astype(np.float32)


def _moments(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread per channel (sums in float64: a reference pools millions of pixels)."""
    mean = lab.mean(axis=0, dtype=np.float64)
    return mean, np.maximum(lab.std(axis=0, dtype=np.float64), 1e-6)


@dataclass(frozen=True)
class Reinhard:
    """A Reinhard reference: mean (3,) and standard deviation (3,) in l-alpha-beta."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, images: np.ndarray) -> Reinhard:
        """The reference of `images` (N, H, W, 3) uint8 (pooled, stride-sampled pixels)."""
        return cls(*_moments(_to_lab(sample_pixels(images))))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.normalize_one(image) for image in images]) if len(images) else images

    def normalize_one(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 with its l-alpha-beta mean and spread moved to the reference's."""
        lab = _to_lab(image.reshape(-1, 3))
        mean, std = _moments(lab)
        gain = (self.std / std).astype(np.float32)
        moved = (lab - mean.astype(np.float32)) * gain + self.mean.astype(np.float32)
        return _to_uint8(_from_lab(moved)).reshape(image.shape)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


STAIN_NORMS.register("macenko")(Macenko.fit)
STAIN_NORMS.register("reinhard")(Reinhard.fit)
