"""Builders of small EBHI-layout folders made of real PNG files."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HUGE_SIDE = 10_000
"""Side of the oversized PNGs: 100 M pixels, over Pillow's own bomb-warning limit (89 M)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def black_png(width: int, height: int, channels: int = 3) -> bytes:
    """A complete, valid PNG of `width` x `height` black pixels (8-bit gray or RGB).

    Written row by row through zlib, so a 10000x10000 image (300 MB decoded) costs this
    process a few hundred KB: the test's own memory never hides the reader's.
    """
    color_type = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = bytes(1 + width * channels)  # filter byte 0, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


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

    def palette_png(self, relative: str, indices: np.ndarray, colours: list[tuple]) -> Path:
        """A palette (mode P) PNG: `indices` (H, W) into `colours` (RGB triples)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(indices.astype(np.uint8), mode="P")
        image.putpalette([value for colour in colours for value in colour])
        image.save(path)
        return path

    def huge(self, relative: str, channels: int = 3, side: int = HUGE_SIDE) -> Path:
        """A valid black PNG of side x side pixels (a few hundred KB on disk)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(black_png(side, side, channels))
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


def _huge_images(b: EbhiBuilder) -> Path:
    # The case: six 10000x10000 PNGs took 3.7 GB before their size was checked.
    for category in ("Normal", "Polyp"):
        for index in range(3):
            b.huge(f"{category}/image/p{index}.png")
            b.huge(f"{category}/label/p{index}.png", channels=1)
    return b.root


def _category_named(name: str) -> Callable[[EbhiBuilder], Path]:
    def build(b: EbhiBuilder) -> Path:
        b.good(("Normal", name))
        return b.root

    return build


def _masks_0_1_among_0_255(b: EbhiBuilder) -> Path:
    b.good(("Normal",))
    for index in range(3):
        b.pair("Polyp", f"q{index}.png", mask=b.mask(value=1))
    return b.root


def _masks_0_100(b: EbhiBuilder) -> Path:
    for category in ("Normal", "Polyp"):
        for index in range(2):
            b.pair(category, f"p{index}.png", mask=b.mask(value=100))
    return b.root


def _masks_all_empty(b: EbhiBuilder) -> Path:
    for category in ("Normal", "Polyp"):
        for index in range(2):
            b.pair(category, f"p{index}.png", mask=b.mask(value=0))
    return b.root


DARK_RED, DARK_GREEN = (90, 0, 0), (0, 90, 0)


def _palette_pair(b: EbhiBuilder, category: str, name: str, indices: np.ndarray) -> None:
    b.png(f"{category}/image/{name}", b.rgb(len(name)))
    b.palette_png(f"{category}/label/{name}", indices, [(0, 0, 0), DARK_RED, DARK_GREEN])


def _palette_three_classes(b: EbhiBuilder) -> Path:
    for category in ("Normal", "Polyp"):
        for index in range(2):
            indices = b.mask(value=1)
            indices[: b.side // 4] *= 2  # some pixels index 2: a second class
            _palette_pair(b, category, f"p{index}.png", indices)
    return b.root


def _palette_beside_gray(b: EbhiBuilder) -> Path:
    b.good(("Normal",))
    for index in range(2):
        _palette_pair(b, "Polyp", f"q{index}.png", b.mask(value=1))
    return b.root


def _category_with_newline(b: EbhiBuilder) -> Path:
    b.good(("Normal", "Bad\nName"))
    return b.root


def _category_not_utf8(b: EbhiBuilder) -> Path:
    # The byte 0xff reaches Python as the surrogate U+DCFF, which nothing can write back out.
    b.good(("Normal", os.fsdecode(b"Pol\xffyp")))
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
    BadDataset("huge-images", _huge_images, "Normal/image/p0.png", "MAX_IMAGE_PIXELS"),
    BadDataset("category-named-macro", _category_named("macro"), "macro", "is reserved"),
    BadDataset("category-named-TOTAL", _category_named("TOTAL"), "TOTAL", "is reserved"),
    BadDataset(
        "category-name-with-newline", _category_with_newline, "'Bad\\nName'", "control character"
    ),
    BadDataset("category-name-not-utf8", _category_not_utf8, "'Pol\\xffyp'", "not valid UTF-8"),
    BadDataset(
        "masks-0-1-among-0-255", _masks_0_1_among_0_255, "Polyp/label/q0.png", "only 0 and 1"
    ),
    BadDataset("masks-0-100", _masks_0_100, "Normal/label/p0.png", "neither 0/255"),
    BadDataset("masks-all-empty", _masks_all_empty, "ebhi", "every mask is empty"),
    BadDataset(
        "palette-three-classes", _palette_three_classes, "Normal/label/p0.png", "2 foreground"
    ),
    BadDataset("palette-beside-gray", _palette_beside_gray, "Polyp/label/q0.png", "two encodings"),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests asking for `bad_dataset` run once per entry of the catalogue."""
    if "bad_dataset" in metafunc.fixturenames:
        metafunc.parametrize("bad_dataset", BAD_DATASETS, ids=[item.id for item in BAD_DATASETS])
