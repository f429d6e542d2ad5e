"""What the network sees: the input mode (`augment.input`) and stain normalisation
(`augment.stain_norm`) applied to a dataset's decoded RGB images.

Modes (all uint8, so every later step, resizing, augmentation, channel statistics, works as
on RGB):

- `rgb`: the decoded images, 3 channels.
- `gray`: luma (ITU-R BT.601 weights, OpenCV's RGB -> gray), 1 channel.
- `hematoxylin`, `eosin`: one stain channel of scikit-image's colour deconvolution
  (`skimage.color.rgb2hed`, Ruifrok & Johnston's H&E-DAB matrix), 1 channel. rgb2hed's
  value of a pixel is a sum of one term per RGB channel, so it is computed with one
  256-entry table per channel (the same numbers as `rgb2hed`, in float32, ~20x faster);
  it is stored on a fixed 8-bit scale where 255 is the largest value a pixel with every
  channel >= 1 can have (`STAIN_SCALE`; pixels with a channel at 0 saturate).

Cost: a mode's conversion of a whole dataset happens once per process and mode
(`converted_images`), like the PNG decode. Stain normalisation depends on the run's
training split, so `RunImages` fits it once per run, on the training images only, and
normalises the rows a loader asks for when it is built. Colour augmentations (rgb_shift,
color_jitter, and any plug-in op) act on RGB: with a 1-channel mode the training loader
keeps RGB images and converts each augmented item (see `ablate.data.loader`).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import cv2
import numpy as np
from skimage.color import hed_from_rgb

from ablate.data.stain import StainNormalizer, fit_stain_norm

INPUT_CHANNELS = {"rgb": 3, "gray": 1, "hematoxylin": 1, "eosin": 1}
"""Channels of each input mode (`augment.input`): the model's `in_channels`."""
STAIN_COLUMNS = {"hematoxylin": 0, "eosin": 1}
"""Column of `rgb2hed`'s output (H, E, DAB) of each stain mode."""
CHUNK = 64
"""Images converted at once: bounds the working copies."""

_LOG_FLOOR = 1e-6  # rgb2hed's own floor before the log
# rgb2hed's normalised optical density of each uint8 value: log(max(x/255, 1e-6)) / log(1e-6).
_NORMALISED_OD = (
    np.log(np.maximum(np.arange(256.0) / 255.0, _LOG_FLOOR)) / np.log(_LOG_FLOOR)
).astype(np.float64)


def _stain_tables(column: int) -> np.ndarray:
    """(3, 256) float32: each RGB channel's term of one rgb2hed output column."""
    return (_NORMALISED_OD[None, :] * hed_from_rgb[:, column][:, None]).astype(np.float32)


_TABLES = {mode: _stain_tables(column) for mode, column in STAIN_COLUMNS.items()}
STAIN_SCALE = {
    mode: float(_NORMALISED_OD[1] * np.clip(hed_from_rgb[:, column], 0, None).sum())
    for mode, column in STAIN_COLUMNS.items()
}
"""rgb2hed value stored as 255 for each stain mode: the largest a pixel whose channels are
all >= 1 reaches (hematoxylin 0.753, eosin 0.455); typical H&E tissue lies well inside."""


def input_channels(mode: str) -> int:
    """Channels the network gets in input mode `mode` (3 for rgb, else 1)."""
    return INPUT_CHANNELS[mode]


def to_input(images: np.ndarray, mode: str) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> (..., H, W, C) uint8 in input mode `mode`.

    Works on one image or a stack; a stack is converted in chunks of CHUNK images.

    Example:
        >>> to_input(np.zeros((2, 8, 8, 3), np.uint8), "hematoxylin").shape
        (2, 8, 8, 1)
    """
    if mode == "rgb":
        return images
    if mode not in INPUT_CHANNELS:
        raise ValueError(f"unknown input mode {mode!r}; valid: {', '.join(INPUT_CHANNELS)}")
    if images.ndim == 3:
        return _convert(images[None], mode)[0]
    out = np.empty((*images.shape[:-1], 1), dtype=np.uint8)
    for start in range(0, len(images), CHUNK):
        out[start : start + CHUNK] = _convert(images[start : start + CHUNK], mode)
    return out


def _convert(images: np.ndarray, mode: str) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W, 1) uint8."""
    if mode == "gray":
        n, h, w, _ = images.shape
        # One image of N*H rows: cvtColor is per pixel, so stacking changes nothing.
        gray = cv2.cvtColor(np.ascontiguousarray(images).reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY)
        return gray.reshape(n, h, w, 1)
    tables = _TABLES[mode]
    value = tables[0][images[..., 0]] + tables[1][images[..., 1]] + tables[2][images[..., 2]]
    scaled = np.clip(value, 0.0, None) * np.float32(255.0 / STAIN_SCALE[mode])
    return np.minimum(np.rint(scaled), 255).astype(np.uint8)[..., None]


def quantize_stain(values: np.ndarray, mode: str) -> np.ndarray:
    """rgb2hed values of one stain column -> the stored uint8 scale (for checks and plots)."""
    scaled = np.clip(values, 0.0, None) * (255.0 / STAIN_SCALE[mode])
    return np.minimum(np.rint(scaled), 255).astype(np.uint8)


_CONVERTED: dict[tuple[int, str], np.ndarray] = {}
_LOCK = threading.Lock()


def converted_images(images: np.ndarray, mode: str) -> np.ndarray:
    """A dataset's images (N, H, W, 3) in input mode `mode`, converted once per process and
    mode; `rgb` returns `images` itself. Treat the result as read-only.

    The memo is keyed by the array's identity and dropped when the array is freed.
    """
    if mode == "rgb":
        return images
    key = (id(images), mode)
    with _LOCK:  # concurrent callers (threads of one process) wait for one conversion
        if key not in _CONVERTED:
            _CONVERTED[key] = to_input(images, mode)
            weakref.finalize(images, _CONVERTED.pop, key, None)
        return _CONVERTED[key]


@dataclass
class RunImages:
    """The images of one run's loaders: the dataset's RGB images, stain-normalised with a
    reference fitted on the run's training rows only, in the run's input mode.

    `rgb(rows)` and `model_input(rows)` give the rows a loader reads; the last rows asked
    for are kept, so the training rows are normalised once even when the channel
    statistics and the training loader both read them.
    """

    images: np.ndarray
    """(N, H, W, 3) uint8: the dataset's decoded images (never modified)."""
    mode: str
    """augment.input."""
    normalizer: StainNormalizer | None = None
    """Fitted on the training rows; None when augment.stain_norm is none."""
    _last: tuple[bytes, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def fit(
        cls, images: np.ndarray, train_rows: np.ndarray, mode: str, stain_norm: str
    ) -> RunImages:
        """The run's images; the stain reference (if any) is estimated from
        `images[train_rows]` alone, so changing validation or test images changes nothing."""
        rows = np.asarray(train_rows, dtype=np.int64)
        normalizer = fit_stain_norm(stain_norm, images[rows]) if stain_norm != "none" else None
        return cls(images, mode, normalizer)

    @property
    def channels(self) -> int:
        return input_channels(self.mode)

    def rgb(self, rows: np.ndarray) -> np.ndarray:
        """(M, H, W, 3) uint8: the rows in RGB, stain-normalised when the run asks for it."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.normalizer is None:
            return self.images[rows]
        key = rows.tobytes()
        if self._last is None or self._last[0] != key:
            self._last = (key, self.normalizer(self.images[rows]))
        return self._last[1]

    def model_input(self, rows: np.ndarray) -> np.ndarray:
        """(M, H, W, C) uint8: the rows as the network sees them (before resizing)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.normalizer is None:
            return converted_images(self.images, self.mode)[rows]
        return to_input(self.rgb(rows), self.mode)
