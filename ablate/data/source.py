"""The dataset a run reads: an EBHI-Seg folder or the synthetic set, decoded once per process."""

from __future__ import annotations

import threading
from pathlib import Path

from ablate.config import DataConfig
from ablate.data.ebhi import SegmentationData, load_ebhi
from ablate.data.synth import synthetic_root
from ablate.errors import DatasetError

_LOADED: dict[str, SegmentationData] = {}
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
    key = str(root.resolve())
    # The lock makes concurrent callers (threads of one process) wait for one decode.
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = load_ebhi(root)
        return _LOADED[key]


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
