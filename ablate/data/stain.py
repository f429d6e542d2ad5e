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


def _tissue(od: np.ndarray) -> np.ndarray:
    """Rows of (P, 3) OD that are not background (OD intensity >= BACKGROUND_OD)."""
    return od[np.linalg.norm(od, axis=1) >= BACKGROUND_OD]


def macenko_stains(od: np.ndarray) -> np.ndarray | None:
    """(3, 2) unit stain vectors (hematoxylin, eosin) of tissue OD rows (P, 3); None when
    there are too few tissue pixels for an estimate."""
    if len(od) < MIN_TISSUE_PIXELS:
        return None
    od = od.astype(np.float64)
    _, vectors = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = vectors[:, 1:]  # (3, 2): the two largest eigenvalues (eigh sorts ascending)
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into positive OD
    projected = od @ plane  # (P, 2)
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
    return od @ np.linalg.pinv(stains).T


def _max_concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    return np.percentile(_concentrations(_tissue(od), stains), MAX_PERCENTILE, axis=0)


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
        od = optical_density(sample_pixels(images))
        stains = macenko_stains(_tissue(od))
        if stains is None:
            raise ValueError(
                f"stain_norm macenko: the reference images have fewer than "
                f"{MIN_TISSUE_PIXELS} tissue pixels (OD intensity >= {BACKGROUND_OD})"
            )
        return cls(stains, _max_concentrations(od, stains))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.normalize_one(image) for image in images]) if len(images) else images

    def normalize_one(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 rebuilt with the reference stains; unchanged when the image has
        too few tissue pixels to estimate its own stains (mostly background)."""
        od = optical_density(image.reshape(-1, 3)).astype(np.float64)
        stains = macenko_stains(_tissue(od))
        if stains is None:
            return image
        source_max = _max_concentrations(od, stains)
        scale = self.max_concentrations / np.maximum(source_max, 1e-6)
        rebuilt = (_concentrations(od, stains) * scale) @ self.stains.T  # (P, 3) OD
        pixels = 255.0 * np.power(10.0, -rebuilt)
        return _to_uint8(pixels).reshape(image.shape)


def _to_lab(pixels: np.ndarray) -> np.ndarray:
    """(P, 3) uint8 RGB -> float64 l-alpha-beta."""
    lms = (pixels.astype(np.float64) / 255.0) @ _RGB_TO_LMS.T
    return np.log10(np.maximum(lms, _LOG_FLOOR)) @ _LMS_TO_LAB.T


def _from_lab(lab: np.ndarray) -> np.ndarray:
    """float64 l-alpha-beta (P, 3) -> RGB on the 0..255 scale (unclipped)."""
    lms = np.power(10.0, lab @ _LAB_TO_LMS.T)
    return 255.0 * (lms @ _LMS_TO_RGB.T)


def _lab_moments(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = _to_lab(pixels)
    return lab.mean(axis=0), np.maximum(lab.std(axis=0), 1e-6)


@dataclass(frozen=True)
class Reinhard:
    """A Reinhard reference: mean (3,) and standard deviation (3,) in l-alpha-beta."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, images: np.ndarray) -> Reinhard:
        """The reference of `images` (N, H, W, 3) uint8 (pooled, stride-sampled pixels)."""
        return cls(*_lab_moments(sample_pixels(images)))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self.normalize_one(image) for image in images]) if len(images) else images

    def normalize_one(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 with its l-alpha-beta mean and spread moved to the reference's."""
        pixels = image.reshape(-1, 3)
        lab = _to_lab(pixels)
        mean, std = lab.mean(axis=0), np.maximum(lab.std(axis=0), 1e-6)
        moved = (lab - mean) / std * self.std + self.mean
        return _to_uint8(_from_lab(moved)).reshape(image.shape)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


STAIN_NORMS.register("macenko")(Macenko.fit)
STAIN_NORMS.register("reinhard")(Reinhard.fit)
