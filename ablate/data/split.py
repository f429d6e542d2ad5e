"""Per-seed stratified train/validation/test split."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Indices into a `SegmentationData`, each array sorted, int64, the three disjoint."""

    train: np.ndarray
    val: np.ndarray
    """Empty when val_fraction == 0 (early stopping then watches the test split)."""
    test: np.ndarray


def _share(count: int, fraction: float, minimum: int) -> int:
    """round(count * fraction), at least `minimum`, leaving at least one item behind."""
    if fraction <= 0 or count < 2:
        return 0
    wanted = max(minimum, math.floor(count * fraction + 0.5))
    return min(wanted, count - 1)


def _rng(seed: int, category: int) -> np.random.Generator:
    # One stream per (seed, category): adding a category leaves the others' splits alone,
    # and a negative seed maps into the unsigned range numpy wants.
    return np.random.default_rng([seed % 2**64, category])


def split_indices(
    category_ids: np.ndarray, seed: int, test_fraction: float, val_fraction: float
) -> Split:
    """Split every category on its own, so each split keeps the category proportions.

    Every category with at least 2 pairs gives at least one test item; with val_fraction
    > 0, every category with at least 2 pairs left after the test share gives at least one
    validation item. `val_fraction` is a share of what remains after the test split. The
    result depends on the seed only, never on global random state.

    Args:
        category_ids: (N,) category index of each pair.
        seed: split seed.
        test_fraction: share of each category held out for testing.
        val_fraction: share of each category's remainder kept for validation; 0 for none.

    Returns:
        The split, each index array sorted.

    Example:
        >>> split = split_indices(np.array([0] * 10 + [1] * 5), seed=0, test_fraction=0.2,
        ...                       val_fraction=0.0)
        >>> len(split.test), len(split.val)
        (3, 0)
    """
    category_ids = np.asarray(category_ids)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for category in np.unique(category_ids):
        members = np.flatnonzero(category_ids == category)
        members = _rng(seed, int(category)).permutation(members)
        n_test = _share(len(members), test_fraction, minimum=1)
        n_val = _share(len(members) - n_test, val_fraction, minimum=1)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return Split(**{name: _sorted(chunks) for name, chunks in parts.items()})


def split_sizes(
    category_counts: Iterable[int], test_fraction: float, val_fraction: float
) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) of `split_indices` over categories of these sizes: the same
    for every seed, since each category's shares are rounded the same way whatever the seed.

    Example:
        >>> split_sizes([24] * 6, test_fraction=0.2, val_fraction=0.1)  # 5 test, 2 val each
        (102, 12, 30)
    """
    n_train = n_val = n_test = 0
    for count in category_counts:
        test = _share(count, test_fraction, minimum=1)
        val = _share(count - test, val_fraction, minimum=1)
        n_train, n_val, n_test = n_train + count - test - val, n_val + val, n_test + test
    return n_train, n_val, n_test


def _sorted(chunks: list[np.ndarray]) -> np.ndarray:
    if not chunks:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(chunks)).astype(np.int64)
