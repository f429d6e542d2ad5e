"""What a dataset's masks mean: their encoding, recognised once over all of them.

Masks come as gray levels 0/255 with compression noise (foreground > 127, the EBHI release),
as 0/1, or as a palette whose index 0 is background. `read_mask` decodes one mask's values
and what the encoding is judged on; `mask_encoding` decides the one encoding all masks fit,
or refuses masks that fit none or mix them; `binarize` turns them into 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.errors import DatasetError

MIXED_ENCODING_SHARE = 0.01
"""A mask holding only 0 and 1 with at least this share of 1s, among 0/255 masks, is taken
for a 0/1-encoded mask (which `> 127` would make empty), not for compression noise."""


@dataclass(frozen=True)
class MaskEncoding:
    """How a dataset's masks mark foreground: a value above `threshold` is foreground."""

    name: str
    """"0/255", "0/1" or "palette-index"."""
    meaning: str
    """What it means, for the cleaning report."""
    threshold: int


ENCODINGS = {
    "0/255": MaskEncoding("0/255", "gray levels 0/255, foreground > 127", 127),
    "0/1": MaskEncoding("0/1", "values 0/1, foreground 1", 0),
    "palette-index": MaskEncoding(
        "palette-index", "palette indices, foreground any index but 0", 0
    ),
}


@dataclass
class MaskValues:
    """One decoded mask before the dataset's encoding is known."""

    indexed: bool
    """Its values are palette indices (0 = background); else gray levels."""
    highest: int
    """Largest value."""
    ones: float
    """Share of pixels equal to 1."""
    used: frozenset[int]
    """Palette indices present (indexed masks only)."""


def read_mask(path: Path, into: np.ndarray) -> MaskValues:
    """Decode a mask's values into `into` (H, W): gray levels, or palette indices when the
    palette means classes; returns what the dataset's encoding is judged on. PIL's errors
    for a damaged file propagate.

    Gray: L, 1 and LA as their gray level; RGB(A) as each pixel's brightest channel, so a
    coloured foreground on black counts as bright. A palette whose colours are gray and
    reach above 127 (or are only 0 and 1) is read as those gray levels; any other palette
    (a dark red foreground, say) is read by index, 0 being background.
    """
    with Image.open(path) as mask:
        mask.load()
        if mask.mode == "P":
            indexed = _palette_values(mask, into)
        elif mask.mode in ("RGB", "RGBA"):
            into[...] = np.asarray(mask.convert("RGB"), dtype=np.uint8).max(axis=2)
            indexed = False
        else:
            into[...] = np.asarray(mask.convert("L"), dtype=np.uint8)
            indexed = False
    counts = np.bincount(into.ravel(), minlength=256)
    present = np.flatnonzero(counts)
    return MaskValues(
        indexed=indexed,
        highest=int(present[-1]),
        ones=float(counts[1]) / into.size,
        used=frozenset(present.tolist()) if indexed else frozenset(),
    )


def _palette_values(mask: Image.Image, into: np.ndarray) -> bool:
    """Write a palette mask's gray levels (True returned: indices) into `into`."""
    indices = np.asarray(mask, dtype=np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    colours = np.frombuffer(bytes(mask.getpalette("RGB") or []), dtype=np.uint8).reshape(-1, 3)
    palette[: len(colours)] = colours[:256]
    used = palette[np.unique(indices)]
    gray = bool((used[:, 0] == used[:, 1]).all() and (used[:, 1] == used[:, 2]).all())
    levels = used[:, 0]
    if gray and (levels.max() > 127 or set(levels.tolist()) <= {0, 1}):
        into[...] = palette[indices, 0]
        return False
    into[...] = indices
    return True


def _examples(names: list[str], chosen: list[int], shown: int = 3) -> str:
    names = [names[index] for index in chosen[:shown]]
    more = f" and {len(chosen) - shown} more" if len(chosen) > shown else ""
    return ", ".join(names) + more


def mask_encoding(root: Path, names: list[str], masks: list[MaskValues]) -> MaskEncoding:
    """The one encoding all masks of the dataset fit (`names`: each mask's file, for
    messages); DatasetError naming the files when the masks fit none, mix encodings, or are
    all empty."""
    indexed = [index for index, mask in enumerate(masks) if mask.indexed]
    gray = [index for index, mask in enumerate(masks) if not mask.indexed]
    if indexed and gray:
        raise DatasetError(
            f"{root}: masks in two encodings: {len(indexed)} palette mask(s) whose colours "
            f"are not gray, read by index ({_examples(names, indexed)}), and {len(gray)} "
            f"gray-level mask(s) ({_examples(names, gray)}); convert them to one encoding"
        )
    if indexed:
        return _palette_encoding(root, names, masks)
    return _gray_encoding(root, names, masks)


def _palette_encoding(root: Path, names: list[str], masks: list[MaskValues]) -> MaskEncoding:
    foreground = sorted(set().union(*(mask.used for mask in masks)) - {0})
    if len(foreground) > 1:
        users = [index for index, mask in enumerate(masks) if len(mask.used - {0}) > 0]
        raise DatasetError(
            f"{root}: palette masks use {len(foreground)} foreground indices "
            f"{foreground[:10]} ({_examples(names, users)}); a binary mask has background "
            "index 0 and one foreground index"
        )
    if not foreground:
        raise DatasetError(f"{root}: every mask is empty (palette index 0 everywhere)")
    return ENCODINGS["palette-index"]


def _gray_encoding(root: Path, names: list[str], masks: list[MaskValues]) -> MaskEncoding:
    highest = max(mask.highest for mask in masks)
    if highest == 0:
        raise DatasetError(f"{root}: every mask is empty (all pixels 0)")
    if highest == 1:
        return ENCODINGS["0/1"]
    if highest <= 127:
        tops = [index for index, mask in enumerate(masks) if mask.highest == highest]
        raise DatasetError(
            f"{root}: mask values go up to {highest} only ({_examples(names, tops)}): neither "
            "0/255 (foreground > 127) nor 0/1; rescale the masks"
        )
    binary = [
        index
        for index, mask in enumerate(masks)
        if mask.highest == 1 and mask.ones >= MIXED_ENCODING_SHARE
    ]
    if binary:
        raise DatasetError(
            f"{root}: {len(binary)} mask(s) hold only 0 and 1 ({_examples(names, binary)}) "
            "among masks in 0/255; `> 127` would make them empty: convert them to 0/255"
        )
    return ENCODINGS["0/255"]


def binarize(masks: np.ndarray, encoding: MaskEncoding) -> None:
    """Foreground 1, background 0, in place, one mask at a time (no full-size temporary)."""
    for mask in masks:
        mask[...] = mask > encoding.threshold
