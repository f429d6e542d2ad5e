"""Stratified, deterministic, disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.data.split import split_indices

# Category sizes of the shared EBHI sample: very unbalanced, two tiny classes.
SIZES = [239, 56, 192, 23, 143, 18]
CATEGORY_IDS = np.repeat(np.arange(len(SIZES)), SIZES)


def test_disjoint_and_covering():
    split = split_indices(CATEGORY_IDS, seed=0, test_fraction=0.2, val_fraction=0.1)
    parts = [split.train, split.val, split.test]
    combined = np.concatenate(parts)
    assert len(combined) == len(CATEGORY_IDS) == len(set(combined.tolist()))
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)  # sorted, no repeats


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stratified_proportions(seed):
    split = split_indices(CATEGORY_IDS, seed=seed, test_fraction=0.2, val_fraction=0.1)
    test_counts = np.bincount(CATEGORY_IDS[split.test], minlength=len(SIZES))
    val_counts = np.bincount(CATEGORY_IDS[split.val], minlength=len(SIZES))
    for size, n_test, n_val in zip(SIZES, test_counts, val_counts, strict=True):
        assert abs(n_test - 0.2 * size) <= 1
        assert abs(n_val - 0.1 * (size - n_test)) <= 1


def test_deterministic_for_a_seed_and_independent_of_global_rng():
    np.random.seed(1)
    first = split_indices(CATEGORY_IDS, seed=3, test_fraction=0.2, val_fraction=0.1)
    np.random.seed(2)
    np.random.rand(100)
    second = split_indices(CATEGORY_IDS, seed=3, test_fraction=0.2, val_fraction=0.1)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    other = split_indices(CATEGORY_IDS, seed=4, test_fraction=0.2, val_fraction=0.1)
    assert not np.array_equal(first.test, other.test)


def test_val_fraction_zero_gives_empty_val():
    split = split_indices(CATEGORY_IDS, seed=0, test_fraction=0.2, val_fraction=0.0)
    assert split.val.size == 0 and split.val.dtype == np.int64
    assert len(split.train) + len(split.test) == len(CATEGORY_IDS)


def test_small_categories_still_get_test_and_val_items():
    category_ids = np.array([0, 0, 1, 1, 1, 2])  # sizes 2, 3, 1
    split = split_indices(category_ids, seed=0, test_fraction=0.1, val_fraction=0.1)
    assert set(category_ids[split.test].tolist()) == {0, 1}  # the single item stays in train
    assert category_ids[split.val].tolist() == [1]
    assert set(category_ids[split.train].tolist()) == {0, 1, 2}


def test_negative_seed_is_accepted():
    split = split_indices(CATEGORY_IDS, seed=-5, test_fraction=0.2, val_fraction=0.0)
    assert len(split.test) > 0
