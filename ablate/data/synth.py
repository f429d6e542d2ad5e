"""A synthetic EBHI-like dataset: H&E-looking tiles whose foreground a U-Net must learn.

Each tile is pink stroma (fibrous texture, sparse small nuclei) with glandular foreground
regions (denser, darker purple epithelium full of nuclei). The six categories differ in the
shape of their regions (round glands with pale lumens, elongated glands, serrated glands,
irregular blobs, large lobes), in foreground share (about 30% to 70%) and in colour. Colour
alone does not separate the classes: each tile gets its own stain shift, lumens inside glands
are pale like stroma yet foreground, and stroma carries nuclei too, so a model needs local
texture (nucleus density) and context (is this pale patch enclosed by epithelium?).

Everything is drawn from `numpy.random.Generator`s seeded per tile, so a seed fixes every
byte, and generation is vectorised (6 x 40 tiles of 224 px in about 3 s on 2 cores).

Measured (2-core CPU, 24 tiles per class at 224 px, split 80/20, trained at 64 px, widths
8..64, Adam 1e-3, dice loss, default augmentation, 6 epochs): macro Dice 0.91 against an
all-foreground floor of 0.69; without skip connections 0.88; without normalization the
network stays at the floor. At 128 px (40 per class, no augmentation): 0.95, 0.94 without skips.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ablate.cache import cache_dir
from ablate.config import SyntheticConfig

STROMA_RGB = np.array([236.0, 172.0, 206.0], dtype=np.float32)
NUCLEUS_RGB = np.array([70.0, 40.0, 120.0], dtype=np.float32)
LUMEN_RGB = np.array([245.0, 228.0, 238.0], dtype=np.float32)


@dataclass(frozen=True)
class CategoryStyle:
    """How one category's foreground looks."""

    shape: str
    """Key of SHAPES: how the foreground regions are drawn."""
    coverage: float
    """Target foreground share of a tile."""
    epithelium_rgb: tuple[float, float, float]
    """Foreground base colour before nuclei."""
    nuclei_density: float
    """Share of foreground pixels seeding a nucleus."""


CATEGORY_STYLES: dict[str, CategoryStyle] = {
    "Adenocarcinoma": CategoryStyle("blobs", 0.70, (168.0, 96.0, 168.0), 0.060),
    "High-grade IN": CategoryStyle("blobs", 0.55, (180.0, 110.0, 176.0), 0.050),
    "Low-grade IN": CategoryStyle("elongated", 0.45, (190.0, 122.0, 184.0), 0.045),
    "Normal": CategoryStyle("round", 0.30, (200.0, 135.0, 190.0), 0.040),
    "Polyp": CategoryStyle("lobes", 0.60, (184.0, 118.0, 186.0), 0.045),
    "Serrated adenoma": CategoryStyle("serrated", 0.38, (176.0, 104.0, 176.0), 0.050),
}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.arange(size, dtype=np.float32)
    return np.meshgrid(axis, axis, indexing="ij")  # (y, x), each (S, S)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """(S, S) float32 noise of unit variance, correlated over about `sigma` pixels."""
    # Smooth noise has no fine detail, so draw it on a coarse grid and upsample: a blur with
    # a large sigma at full resolution would dominate the generation time.
    step = max(1, int(sigma // 2))
    coarse = rng.standard_normal((size // step + 3, size // step + 3)).astype(np.float32)
    field = ndimage.gaussian_filter(coarse, sigma / step, truncate=3.0)
    if step > 1:
        field = ndimage.zoom(field, step, order=1)
    field = field[:size, :size]
    return (field - field.mean()) / (field.std() + 1e-6)


def _threshold_at(field: np.ndarray, coverage: float) -> np.ndarray:
    return field > np.quantile(field, 1.0 - coverage)


def _target_coverage(rng: np.random.Generator, style: CategoryStyle) -> float:
    return float(np.clip(rng.normal(style.coverage, 0.07), 0.1, 0.95))


def _blobs(rng: np.random.Generator, size: int, coverage: float) -> np.ndarray:
    return _threshold_at(_smooth_noise(rng, size, size / 14), coverage)


def _lobes(rng: np.random.Generator, size: int, coverage: float) -> np.ndarray:
    # Large smooth lobes with a fine ragged margin.
    field = _smooth_noise(rng, size, size / 6) + 0.25 * _smooth_noise(rng, size, size / 40)
    return _threshold_at(field, coverage)


def _add_glands(
    rng: np.random.Generator,
    size: int,
    coverage: float,
    gland: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray],
) -> np.ndarray:
    """Union of glands drawn one by one until the target coverage is reached."""
    y, x = _grid(size)
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(60):
        if mask.mean() >= coverage:
            break
        cy, cx = rng.uniform(-0.05, 1.05, 2) * size
        mask |= gland(y - cy, x - cx, rng)
    return mask


def _round(rng: np.random.Generator, size: int, coverage: float) -> np.ndarray:
    def gland(dy: np.ndarray, dx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        radius = rng.uniform(0.07, 0.12) * size
        return dy**2 + dx**2 < radius**2

    return _add_glands(rng, size, coverage, gland)


def _elongated(rng: np.random.Generator, size: int, coverage: float) -> np.ndarray:
    direction = rng.uniform(0, np.pi)  # glands of one tile run roughly parallel

    def gland(dy: np.ndarray, dx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        angle = direction + rng.normal(0, 0.25)
        along = dx * np.cos(angle) + dy * np.sin(angle)
        across = -dx * np.sin(angle) + dy * np.cos(angle)
        length, width = rng.uniform(0.18, 0.32) * size, rng.uniform(0.045, 0.07) * size
        return (along / length) ** 2 + (across / width) ** 2 < 1.0

    return _add_glands(rng, size, coverage, gland)


def _serrated(rng: np.random.Generator, size: int, coverage: float) -> np.ndarray:
    def gland(dy: np.ndarray, dx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        radius = rng.uniform(0.09, 0.14) * size
        teeth, phase = rng.integers(9, 15), rng.uniform(0, 2 * np.pi)
        theta = np.arctan2(dy, dx)
        # A saw-tooth radius gives the star-shaped lumen outline of serrated glands.
        saw = 2.0 * ((teeth * theta + phase) / (2 * np.pi) % 1.0) - 1.0
        return np.hypot(dy, dx) < radius * (1.0 + 0.22 * np.abs(saw))

    return _add_glands(rng, size, coverage, gland)


SHAPES: dict[str, Callable[[np.random.Generator, int, float], np.ndarray]] = {
    "blobs": _blobs,
    "lobes": _lobes,
    "round": _round,
    "elongated": _elongated,
    "serrated": _serrated,
}
GLAND_SHAPES = frozenset({"round", "elongated", "serrated"})


def _nuclei(rng: np.random.Generator, density: np.ndarray, radius: float) -> np.ndarray:
    """(S, S) darkening in [0, 1]: blurred random seeds, denser where `density` is high."""
    seeds = (rng.random(density.shape, dtype=np.float32) < density).astype(np.float32)
    dots = ndimage.gaussian_filter(seeds, radius)
    return np.clip(dots * (2 * np.pi * radius**2) * 0.9, 0.0, 1.0)


def _lumen(mask: np.ndarray, shape: str, size: int) -> np.ndarray:
    """Pale lumen inside each gland: the part farther than a rim width from the edge."""
    if shape not in GLAND_SHAPES:
        return np.zeros_like(mask)
    rim = 0.035 * size
    return ndimage.distance_transform_edt(mask) > rim


def render_tile(
    rng: np.random.Generator, style: CategoryStyle, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One tile of a category.

    Returns:
        image (S, S, 3) uint8 RGB and mask (S, S) uint8 in {0, 255}.
    """
    mask = SHAPES[style.shape](rng, size, _target_coverage(rng, style))
    lumen = _lumen(mask, style.shape, size)
    fg = mask.astype(np.float32)[..., None]
    # Stroma: fibres (noise smoothed more along one axis) modulate the pink.
    fibres = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (0.6, 3))
    stroma = STROMA_RGB * (
        1 + 0.10 * fibres[..., None] + 0.05 * _smooth_noise(rng, size, 8)[..., None]
    )
    epithelium = np.array(style.epithelium_rgb, dtype=np.float32) * (
        1 + 0.06 * _smooth_noise(rng, size, 3)[..., None]
    )
    image = stroma * (1 - fg) + epithelium * fg
    image = np.where(lumen[..., None], LUMEN_RGB, image)
    scale = size / 224
    density = np.where(mask & ~lumen, style.nuclei_density, 0.004).astype(np.float32)
    dark = _nuclei(rng, density, radius=max(0.7, 1.6 * scale))[..., None]
    image = image * (1 - dark) + NUCLEUS_RGB * dark
    # Per-tile stain variation: the absolute colour of a pixel is an unreliable cue.
    stain = rng.normal(1.0, 0.06, 3).astype(np.float32)
    image = image * stain + rng.normal(0, 6, 3).astype(np.float32)
    image += 5 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def write_synthetic(out: str | Path, per_class: int, size: int = 224, seed: int = 0) -> Path:
    """Write a synthetic dataset in the EBHI-Seg layout.

    `<out>/<Category>/image/synth-0000.png` (RGB) and `.../label/synth-0000.png` (8-bit gray,
    0 or 255). Each tile has its own generator seeded by (seed, category, tile), so the same
    seed writes the same bytes and a larger `per_class` extends a smaller one.

    Args:
        out: output folder (created; existing files with the same names are overwritten).
        per_class: pairs per category.
        size: tile side in pixels.
        seed: generator seed.

    Returns:
        The output folder.

    Example:
        >>> root = write_synthetic("/tmp/synth", per_class=8, size=64)
    """
    out = Path(out)
    jobs = []
    for category_index, (category, style) in enumerate(CATEGORY_STYLES.items()):
        for sub in ("image", "label"):
            (out / category / sub).mkdir(parents=True, exist_ok=True)
        jobs += [
            (out / category, style, (seed % 2**64, category_index, tile))
            for tile in range(per_class)
        ]

    def write(job: tuple[Path, CategoryStyle, tuple[int, int, int]]) -> None:
        folder, style, key = job
        image, mask = render_tile(np.random.default_rng(key), style, size)
        name = f"synth-{key[2]:04d}.png"
        Image.fromarray(image, "RGB").save(folder / "image" / name, compress_level=1)
        Image.fromarray(mask, "L").save(folder / "label" / name, compress_level=1)

    # Threads overlap PNG encoding and numpy loops (both release the GIL); every tile has its
    # own generator, so the order in which threads finish does not matter.
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(write, jobs))
    return out


GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes, so a stale cached dataset is never reused."""


def synthetic_root(config: SyntheticConfig) -> Path:
    """The folder of the synthetic dataset `config` describes, generated on first use.

    Lives in `$ABLATE_CACHE/synthetic/v<version>-<per_class>-<size>-<seed>` (default cache
    `~/.cache/ablate`). Generation writes to a temporary folder that is renamed into place,
    so a half-written dataset is never seen and two processes racing both end up reading
    one complete copy.
    """
    name = f"v{GENERATOR_VERSION}-{config.per_class}-{config.size}-{config.seed}"
    target = cache_dir() / "synthetic" / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_synthetic(staging, config.per_class, config.size, config.seed)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # lost the race only if the winner's copy is there
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
