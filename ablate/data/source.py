"""The dataset a run reads: an EBHI-Seg folder or the synthetic set, decoded once per process.

A folder is read by the reader `data.reader` names, from the `READERS` registry: `ebhi` (the
EBHI-Seg layout) or a plug-in's reader `(root: Path) -> SegmentationData`, whose result is
checked against the data contract (shapes, dtypes, masks in {0, 1}) when it is first used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ablate.config import DataConfig
from ablate.data.ebhi import SegmentationData, load_ebhi
from ablate.data.synth import synthetic_root
from ablate.errors import DatasetError
from ablate.plugins import describe_source
from ablate.registry import BUILTIN, Registry

Reader = Callable[[Path], SegmentationData]


def _check_reader(name: str, reader: Reader) -> None:
    """A plug-in reader must be callable; what it returns is checked when it is used."""
    if not callable(reader):
        raise TypeError("a reader is a callable (root: Path) -> SegmentationData")


READERS: Registry[Reader] = Registry("reader", check=_check_reader)
READERS.register("ebhi")(load_ebhi)

_LOADED: dict[tuple[str, str], SegmentationData] = {}
_LOCK = threading.Lock()


def data_root(config: DataConfig) -> Path:
    """The folder `config` points at; the synthetic set is generated into the cache first."""
    if config.synthetic is not None:
        return synthetic_root(config.synthetic)
    return Path(config.root).expanduser()


def load_data(config: DataConfig) -> SegmentationData:
    """The decoded dataset of `config`, read from disk once per process.

    Memoised by the resolved root folder, so every run of a trial (and every config naming the
    same folder by another path) shares one copy of the arrays. Treat the arrays as read-only.

    Raises:
        DatasetError: the folder is missing, not in the EBHI layout, or has no usable pair.

    Example:
        >>> data = load_data(DataConfig(synthetic=SyntheticConfig(per_class=8, size=64)))
        >>> data.images.shape
        (48, 64, 64, 3)
    """
    root = data_root(config)
    key = (config.reader, str(root.resolve()))
    # The lock makes concurrent callers (threads of one process) wait for one decode.
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _read(config.reader, root)
        return _LOADED[key]


def _read(name: str, root: Path) -> SegmentationData:
    """The dataset at `root` read by reader `name`; a plug-in's result is checked."""
    data = READERS.get(name)(root)
    source = READERS.source(name)
    if source != BUILTIN:
        problem = data_problem(data)
        if problem:
            raise DatasetError(f"reader {name!r} of {describe_source(source)}: {problem}")
    return data


def data_problem(data: object) -> str | None:
    """What breaks the SegmentationData contract (docs/ARCHITECTURE.md "Data"), or None."""
    if not isinstance(data, SegmentationData):
        return f"returned a {type(data).__name__}, not a SegmentationData"
    images, masks, ids = data.images, data.masks, data.category_ids
    count = len(data.names)
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4):
        return "images must be a (N, H, W, 3) uint8 array"
    if images.shape[0] != count or images.shape[-1] != 3 or count == 0:
        return f"images {images.shape} must be (N, H, W, 3) with N = {count} names > 0"
    if not isinstance(masks, np.ndarray) or masks.shape != images.shape[:3]:
        return f"masks must be (N, H, W) = {images.shape[:3]}"
    if masks.dtype != np.uint8 or masks.max() > 1:
        return "masks must be uint8 in {0, 1}"
    if not isinstance(ids, np.ndarray) or ids.shape != (count,):
        return f"category_ids must be an ({count},) integer array"
    if ids.min() < 0 or ids.max() >= len(data.categories):
        return f"category_ids must index the {len(data.categories)} categories"
    if len(set(data.names)) != count:
        return "names must be unique"
    return None


def load_grid_data(grid_path: str | Path, config: DataConfig) -> SegmentationData:
    """`load_data` for a command given a grid file: a dataset problem names the file and key.

    Raises:
        DatasetError: as load_data, prefixed with `GRID: data.root` (or `data.synthetic`).
    """
    try:
        return load_data(config)
    except DatasetError as error:
        key = "data.synthetic" if config.synthetic is not None else "data.root"
        raise DatasetError(f"{grid_path}: {key}: {error}") from None


def clear_loaded() -> None:
    """Forget every memoised dataset (tests, or a process that must re-read a changed folder)."""
    with _LOCK:
        _LOADED.clear()
