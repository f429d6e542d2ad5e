"""Builders of small EBHI-layout folders made of real PNG files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


class EbhiBuilder:
    """Writes real PNGs under `root` in the EBHI layout; tiles are `side` px squares."""

    def __init__(self, root: Path, side: int = 32) -> None:
        self.root = root
        self.side = side

    def rgb(self, seed: int, side: int | None = None) -> np.ndarray:
        """(side, side, 3) uint8 random image."""
        side = side or self.side
        return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)

    def mask(self, side: int | None = None, value: int = 255) -> np.ndarray:
        """(side, side) uint8: left half `value`, right half 0."""
        side = side or self.side
        mask = np.zeros((side, side), dtype=np.uint8)
        mask[:, : side // 2] = value
        return mask

    def png(self, relative: str, array: np.ndarray) -> Path:
        """Write `array` as a PNG at root/relative."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        return path

    def pair(
        self,
        category: str,
        name: str,
        image: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """One image/label pair; None writes a default image or mask."""
        self.png(f"{category}/image/{name}", self.rgb(len(name)) if image is None else image)
        self.png(f"{category}/label/{name}", self.mask() if mask is None else mask)

    def good(self, categories: tuple[str, ...] = ("Normal", "Polyp"), pairs: int = 3) -> Path:
        """`pairs` good pairs p0.png.. (image rgb(index)) in each category; returns root."""
        for category in categories:
            for index in range(pairs):
                self.pair(category, f"p{index}.png", image=self.rgb(index))
        return self.root


@pytest.fixture
def ebhi(tmp_path: Path) -> EbhiBuilder:
    """A builder writing under a fresh tmp_path/ebhi."""
    return EbhiBuilder(tmp_path / "ebhi")


@dataclass(frozen=True)
class BadDataset:
    """A dataset folder that must be refused, and what the refusal must name."""

    id: str
    build: Callable[[EbhiBuilder], Path]
    culprit: str
    """Text naming the culprit (folder or file) that the message must contain."""
    says: str
    """What is wrong, as the message says it."""


def _missing(b: EbhiBuilder) -> Path:
    return b.root / "nowhere"


def _a_file(b: EbhiBuilder) -> Path:
    b.root.mkdir(parents=True)
    (b.root / "data.zip").write_bytes(b"PK")
    return b.root / "data.zip"


def _empty(b: EbhiBuilder) -> Path:
    b.root.mkdir(parents=True)
    (b.root / ".DS_Store").write_bytes(b"\0")  # hidden files do not count
    return b.root


def _no_category(b: EbhiBuilder) -> Path:
    b.png("a.png", b.rgb(0))
    return b.root


def _no_image_folder(b: EbhiBuilder) -> Path:
    b.pair("Normal", "a.png")
    b.png("Serrated adenoma/label/a.png", b.mask())
    return b.root


def _no_label_folder(b: EbhiBuilder) -> Path:
    b.pair("Normal", "a.png")
    b.png("Serrated adenoma/image/a.png", b.rgb(0))
    return b.root


def _corrupt_png(b: EbhiBuilder) -> Path:
    b.pair("Normal", "a.png")
    path = b.root / "Normal" / "image" / "a.png"
    path.write_bytes(path.read_bytes()[:-200])  # truncated mid-data
    return b.root


def _mask_other_size(b: EbhiBuilder) -> Path:
    b.pair("Normal", "a.png", mask=b.mask(side=16))
    return b.root


def _grayscale_image(b: EbhiBuilder) -> Path:
    b.pair("Normal", "a.png", image=b.rgb(0)[..., 0])
    return b.root


def _no_label_anywhere(b: EbhiBuilder) -> Path:
    for name in ("a.png", "b.png"):
        b.png(f"Low-grade IN/image/{name}", b.rgb(0))
    (b.root / "Low-grade IN" / "label").mkdir()
    return b.root


def _one_pair_per_category(b: EbhiBuilder) -> Path:
    for category in ("Normal", "Polyp"):
        b.pair(category, "a.png")
    return b.root


BAD_DATASETS = [
    BadDataset("missing-root", _missing, "nowhere", "does not exist"),
    BadDataset("root-is-a-file", _a_file, "data.zip", "not a folder"),
    BadDataset("empty-root", _empty, "ebhi", "is empty"),
    BadDataset("no-category-folder", _no_category, "ebhi", "no category folder"),
    BadDataset("category-without-image", _no_image_folder, "Serrated adenoma", "no image/"),
    BadDataset("category-without-label", _no_label_folder, "Serrated adenoma", "no label/"),
    BadDataset("corrupt-png", _corrupt_png, "Normal/image/a.png", "unreadable PNG"),
    BadDataset("mask-other-size", _mask_other_size, "Normal/label/a.png", "wrong size 16x16"),
    BadDataset("grayscale-image", _grayscale_image, "Normal/image/a.png", "not RGB (mode L)"),
    BadDataset("no-label-anywhere", _no_label_anywhere, "Low-grade IN/image/a.png", "no label"),
    BadDataset("one-pair-per-category", _one_pair_per_category, "ebhi", "no category has 2"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests asking for `bad_dataset` run once per entry of the catalogue."""
    if "bad_dataset" in metafunc.fixturenames:
        metafunc.parametrize("bad_dataset", BAD_DATASETS, ids=[item.id for item in BAD_DATASETS])
