"""Stain normalisation on known cases: Beer-Lambert images made of two known stains."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.data.stain import (
    Macenko,
    Reinhard,
    _from_lab,
    _to_lab,
    fit_stain_norm,
    macenko_stains,
    optical_density,
    sample_pixels,
)
from ablate.errors import UserError

# Ruifrok & Johnston's H and E optical densities (unit vectors).
H = np.array([0.650, 0.704, 0.286])
E = np.array([0.072, 0.990, 0.105])
STAINS = np.stack([H / np.linalg.norm(H), E / np.linalg.norm(E)], axis=1)  # (3, 2)


def two_stain_image(stains: np.ndarray, scale: float = 1.0, side: int = 64, seed: int = 0):
    """(side, side, 3) uint8 by Beer-Lambert: pure-H, pure-E, mixed and background pixels."""
    rng = np.random.default_rng(seed)
    count = side * side
    amounts = rng.uniform(0.2, 1.2, size=(count, 2))
    kind = rng.integers(0, 4, size=count)
    amounts[kind == 0, 1] = 0.0  # pure hematoxylin
    amounts[kind == 1, 0] = 0.0  # pure eosin
    amounts[kind == 3] = 0.0  # background: no stain
    od = (amounts * scale) @ stains.T
    pixels = 255.0 * np.power(10.0, -od)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(side, side, 3)


def shifted_stains() -> np.ndarray:
    """Another lab's stains: hematoxylin bluer, eosin redder."""
    h = np.array([0.55, 0.76, 0.35])
    e = np.array([0.15, 0.97, 0.18])
    return np.stack([h / np.linalg.norm(h), e / np.linalg.norm(e)], axis=1)


def test_macenko_finds_the_stains_of_a_two_stain_image() -> None:
    od = optical_density(two_stain_image(STAINS).reshape(-1, 3))
    tissue = od[np.linalg.norm(od, axis=1) >= 0.15]
    found = macenko_stains(tissue)
    assert found is not None
    cosines = (found * STAINS).sum(axis=0)  # both columns unit length
    assert cosines.min() > 0.995, cosines


@pytest.mark.parametrize("method", [Macenko, Reinhard])
def test_an_image_normalised_to_its_own_statistics_is_unchanged(method) -> None:
    image = two_stain_image(STAINS)
    out = method.fit(image[None])(image[None])[0]
    assert out.dtype == np.uint8 and out.shape == image.shape
    difference = np.abs(out.astype(int) - image.astype(int))
    assert difference.mean() < 0.5 and difference.max() <= 3, (difference.mean(), difference.max())


def test_macenko_brings_another_labs_staining_back() -> None:
    original = two_stain_image(STAINS, seed=1)
    shifted = two_stain_image(shifted_stains(), scale=0.7, seed=1)  # same tissue, other lab
    normalized = Macenko.fit(original[None])(shifted[None])[0]
    before = np.abs(shifted.astype(int) - original.astype(int)).mean()
    after = np.abs(normalized.astype(int) - original.astype(int)).mean()
    assert before > 10 and after < 1.5, (before, after)


def test_reinhard_undoes_a_shift_of_the_colour_statistics() -> None:
    original = two_stain_image(STAINS, seed=2)
    lab = _to_lab(original.reshape(-1, 3))
    # Spread and means moved in l-alpha-beta (mildly: white background saturates at 255).
    moved = (lab - lab.mean(0)) * np.array([0.95, 1.1, 0.9]) + lab.mean(0) + [-0.02, 0.01, -0.01]
    shifted = np.clip(np.rint(_from_lab(moved)), 0, 255).astype(np.uint8).reshape(original.shape)
    normalized = Reinhard.fit(original[None])(shifted[None])[0]
    before = np.abs(shifted.astype(int) - original.astype(int)).mean()
    after = np.abs(normalized.astype(int) - original.astype(int)).mean()
    assert before > 10 and after < 1.0, (before, after)


@pytest.mark.parametrize("method", [Macenko, Reinhard])
def test_output_stays_uint8_in_range_on_extreme_pixels(method) -> None:
    reference = two_stain_image(STAINS)
    rng = np.random.default_rng(3)
    extreme = rng.choice([0, 1, 254, 255], size=(2, 32, 32, 3)).astype(np.uint8)
    extreme[1, :16] = two_stain_image(STAINS, side=32, seed=4)[:16]
    out = method.fit(reference[None])(extreme)
    assert out.dtype == np.uint8 and out.shape == extreme.shape


def test_macenko_leaves_a_blank_image_as_it_is_and_refuses_a_blank_reference() -> None:
    blank = np.full((1, 32, 32, 3), 250, dtype=np.uint8)
    reference = Macenko.fit(two_stain_image(STAINS)[None])
    assert np.array_equal(reference(blank), blank)
    with pytest.raises(ValueError, match="tissue pixels"):
        Macenko.fit(blank)


def test_reference_pixels_are_bounded_and_deterministic() -> None:
    images = np.random.default_rng(5).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    sample = sample_pixels(images, limit=5000)
    assert len(sample) <= 5000 and np.array_equal(sample, sample_pixels(images, limit=5000))


def test_registry_names_and_none() -> None:
    image = two_stain_image(STAINS)[None]
    assert fit_stain_norm("none", image) is None
    assert isinstance(fit_stain_norm("reinhard", image), Reinhard)
    with pytest.raises(UserError, match="valid: macenko, reinhard"):
        fit_stain_norm("vahadane", image)
