"""Train and eval loaders: batch contract, determinism, copies, balanced sampling, stats."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from ablate.config import AugmentConfig, DataConfig, TrainConfig
from ablate.data.loader import (
    EpochSampler,
    build_eval_loader,
    build_train_loader,
    channel_stats,
)
from ablate.data.source import clear_loaded, load_data
from ablate.data.split import split_indices

TRAIN = TrainConfig(image_size=32, batch_size=4)
AUGMENT = AugmentConfig(
    ops={"rotate": 0.5, "hflip": 0.5, "vflip": 0.5, "rgb_shift": 0.3, "blur": 0.2, "elastic": 0.3}
)


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_data(DataConfig(root=str(synthetic_root)))


@pytest.fixture(scope="module")
def split(data):
    return split_indices(data.category_ids, seed=0, test_fraction=0.25, val_fraction=0.0)


def train_loader(data, indices, seed=0, augment=AUGMENT, train=TRAIN, workers=0, stats=None):
    return build_train_loader(data, indices, augment, train, seed, workers, False, stats)


def epoch(loader) -> list[dict[str, torch.Tensor]]:
    return list(loader)


def same_batches(first, second) -> bool:
    return len(first) == len(second) and all(
        torch.equal(a[key], b[key]) for a, b in zip(first, second, strict=True) for key in a
    )


def test_load_data_is_memoised_by_resolved_root(data, synthetic_root):
    again = load_data(DataConfig(root=str(synthetic_root / "Normal" / "..")))
    assert again is data
    clear_loaded()
    assert load_data(DataConfig(root=str(synthetic_root))) is not data


def test_train_batches_follow_the_contract(data, split):
    batch = next(iter(train_loader(data, split.train)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 32, 32) and batch["mask"].dtype == torch.int64
    assert batch["category"].shape == (4,) and batch["category"].dtype == torch.int64
    assert batch["index"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= {0, 1}
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    indices = batch["index"].numpy()
    assert set(indices) <= set(split.train.tolist())
    np.testing.assert_array_equal(batch["category"].numpy(), data.category_ids[indices])


def test_eval_batches_keep_native_masks_in_order(data, split):
    loader = build_eval_loader(data, split.test, TRAIN, 0, False, None)
    batches = list(loader)
    assert batches[0]["image"].shape == (8, 3, 32, 32)  # 2 * batch_size
    assert batches[0]["mask"].shape == (8, 64, 64)
    indices = torch.cat([batch["index"] for batch in batches]).numpy()
    np.testing.assert_array_equal(indices, split.test)
    np.testing.assert_array_equal(batches[0]["mask"][0].numpy(), data.masks[split.test[0]])
    custom = TrainConfig(image_size=32, batch_size=4, eval_batch_size=3)
    assert (
        next(iter(build_eval_loader(data, split.test, custom, 0, False, None)))["image"].shape[0]
        == 3
    )


def test_same_seed_same_batches_other_seed_other_batches(data, split):
    first, second = train_loader(data, split.train, seed=1), train_loader(data, split.train, seed=1)
    epochs_a = [epoch(first), epoch(first)]
    epochs_b = [epoch(second), epoch(second)]
    assert same_batches(epochs_a[0], epochs_b[0]) and same_batches(epochs_a[1], epochs_b[1])
    assert not same_batches(epochs_a[0], epochs_a[1])  # a new order and new augmentations
    assert not same_batches(epochs_a[0], epoch(train_loader(data, split.train, seed=2)))


def test_worker_processes_give_the_same_batches(data, split):
    in_process = epoch(train_loader(data, split.train, seed=3))
    loader = train_loader(data, split.train, seed=3, workers=2)
    assert loader.persistent_workers
    assert same_batches(in_process, epoch(loader))


def test_copies_give_k_views_of_every_image(data, split):
    loader = train_loader(data, split.train, augment=AUGMENT.model_copy(update={"copies": 3}))
    batches = epoch(loader)
    counts = Counter(torch.cat([batch["index"] for batch in batches]).tolist())
    assert counts == dict.fromkeys(split.train.tolist(), 3)
    images = torch.cat([batch["image"] for batch in batches])
    views = images[torch.cat([batch["index"] for batch in batches]) == int(split.train[0])]
    assert not torch.equal(views[0], views[1]) or not torch.equal(views[1], views[2])


def test_balanced_sampling_evens_out_categories():
    # 30 items of category 0, 3 of category 1; weights 1/count give both the same share.
    category_ids = np.array([0] * 30 + [1] * 3)
    sampler = EpochSampler(category_ids, copies=1, seed=0, balanced=True)
    draws = [position for _ in range(20) for position, _ in sampler]
    assert len(list(sampler)) == 33  # same epoch length as without balancing
    share = np.mean(category_ids[draws] == 1)
    assert 0.4 < share < 0.6
    again = EpochSampler(category_ids, copies=1, seed=0, balanced=True)
    assert [p for _ in range(20) for p, _ in again] == draws


def test_balanced_train_loader(data, split):
    balanced = TRAIN.model_copy(update={"balanced": True})
    batches = epoch(train_loader(data, split.train, train=balanced))
    assert sum(len(batch["index"]) for batch in batches) == len(split.train)


def test_normalization_with_train_stats(data, split):
    stats = channel_stats(data.images[split.train])
    pixels = data.images[split.train].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(stats.std, pixels.std(axis=0), atol=1e-6)
    plain = AugmentConfig(ops={})
    size = TrainConfig(image_size=64, batch_size=4)  # native size: no resize blur
    images = torch.cat(
        [
            b["image"]
            for b in epoch(train_loader(data, split.train, augment=plain, train=size, stats=stats))
        ]
    )
    np.testing.assert_allclose(images.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(images.std(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-3)
