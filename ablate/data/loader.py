"""PyTorch loaders over a decoded `SegmentationData`.

The split's images are resized to the training resolution once when a loader is built, never
per epoch. Training batches come from `EpochSampler`, which draws each epoch's order (shuffled,
or balanced by category) and one augmentation seed per item from (seed, epoch) alone: the
batches of a seed are the same whatever the number of workers.

What a loader reads comes from the run's `RunImages` (`ablate.data.inputs`): the input mode
(rgb: 3 channels, gray/hematoxylin/eosin: 1) and the stain normalisation fitted on the
training split. With a 1-channel mode and a colour op on (rgb_shift, color_jitter, or a
plug-in op, which may expect RGB), the training items stay RGB through the augmentation and
are converted one by one afterwards; otherwise the loader reads the converted images.

Batches are dicts: `image` float32 (B, C, h, w) at `train.image_size`; `mask` int64 (B, H, W)
in {0, 1} (training: at image_size, evaluation: native resolution); `category` int64 (B,);
`index` int64 (B,), the row in `SegmentationData`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    Sampler,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
)

from ablate.config import AugmentConfig, TrainConfig
from ablate.data.augment import build_augmentation, needs_rgb, reseed
from ablate.data.ebhi import SegmentationData
from ablate.data.inputs import RunImages, to_input

# An item key: a position in the loader's arrays, plus the augmentation seed of this draw.
ItemKey = tuple[int, int]


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of images scaled to [0, 1] (channel order:
    RGB, or the one channel of a 1-channel input mode)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def channel_stats(images: np.ndarray) -> ChannelStats:
    """Per-channel mean/std of (N, H, W, C) uint8 images, on the [0, 1] scale.

    Accumulates in float64 chunk by chunk, so a large split needs no float copy of itself.
    """
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), 64):
        chunk = images[start : start + 64].reshape(-1, channels).astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += (chunk**2).sum(axis=0)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return ChannelStats(tuple(mean.tolist()), tuple(std.tolist()))


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, size, size, C); area interpolation keeps nuclei from aliasing."""
    if images.shape[1:3] == (size, size):
        return images
    resized = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images]
    # cv2 drops a single channel's axis; the reshape puts it back.
    return np.stack(resized).reshape(len(images), size, size, images.shape[-1])


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) uint8 -> (N, size, size); nearest neighbour keeps the masks binary."""
    if masks.shape[1:3] == (size, size):
        return masks
    return np.stack(
        [cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST) for mask in masks]
    )


class SegmentationDataset(Dataset):
    """Items of one split, already at their loader's resolution.

    An item is addressed by a position, or by (position, augmentation seed) when a transform
    is set; the transform is reseeded from (seed,) for every draw. With `convert` set,
    `images` are RGB and each item is converted to that input mode after the transform
    (colour ops need RGB); None means `images` are already what the network sees.
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        category_ids: np.ndarray,
        indices: np.ndarray,
        transform: A.Compose | None = None,
        stats: ChannelStats | None = None,
        convert: str | None = None,
    ) -> None:
        self.images = images  # (M, h, w, C) uint8
        self.masks = masks  # (M, H, W) uint8 in {0, 1}
        self.category_ids = category_ids
        self.indices = indices
        self.transform = transform
        self.convert = convert
        # None when inputs stay in [0, 1]: skips two array ops per item on the hot path.
        self.standardize = (
            None if stats is None else (_channel_column(stats.mean), _channel_column(stats.std))
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | ItemKey) -> dict[str, torch.Tensor]:
        position, draw_seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.images[position], self.masks[position]
        if self.transform is not None and draw_seed is not None:
            reseed(self.transform, (draw_seed,))
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        if self.convert is not None:
            image = to_input(image, self.convert)
        # numpy, not torch: torch runs a 3-channel tile's ops on its intra-op threads, which
        # made the in-process loader 15x slower on shared cores (benchmarks/RESULTS.md).
        pixels = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
        if self.standardize is not None:
            mean, std = self.standardize
            pixels = (pixels - mean) / std
        return {
            "image": torch.from_numpy(pixels),  # (C, h, w) float32
            "mask": torch.from_numpy(np.ascontiguousarray(mask)).long(),  # (H, W)
            "category": torch.tensor(int(self.category_ids[position])),
            "index": torch.tensor(int(self.indices[position])),
        }


def _channel_column(values: tuple[float, ...]) -> np.ndarray:
    """(C, 1, 1) float32 per-channel values, broadcast over a (C, h, w) image."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


class EpochSampler(Sampler[ItemKey]):
    """Each epoch: `copies` draws of every item (shuffled), or as many draws weighted by
    1 / category count (balanced), each draw with its own augmentation seed.

    Everything is derived from (seed, epoch); the epoch advances at every iteration, and
    `set_epoch` pins it (e.g. to replay an epoch).
    """

    def __init__(self, category_ids: np.ndarray, copies: int, seed: int, balanced: bool) -> None:
        self.category_ids = np.asarray(category_ids)
        self.copies = copies
        self.seed = seed
        self.balanced = balanced
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.category_ids) * self.copies

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _weights(self) -> torch.Tensor:
        _, inverse, counts = np.unique(self.category_ids, return_inverse=True, return_counts=True)
        return torch.as_tensor(1.0 / counts[inverse], dtype=torch.double)

    def _positions(self, rng: np.random.Generator) -> np.ndarray:
        if not self.balanced:
            return rng.permutation(np.tile(np.arange(len(self.category_ids)), self.copies))
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        draws = WeightedRandomSampler(
            self._weights(), len(self), replacement=True, generator=generator
        )
        return np.fromiter(draws, dtype=np.int64, count=len(self))

    def __iter__(self) -> Iterator[ItemKey]:
        rng = np.random.default_rng([self.seed % 2**64, self.epoch])
        self.epoch += 1
        positions = self._positions(rng)
        draw_seeds = rng.integers(0, 2**63, size=len(positions))
        return iter(zip(positions.tolist(), draw_seeds.tolist(), strict=True))


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; pass that on to numpy and random
    # for any library code that reads the global generators.
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch items like torch's default_collate; in the training process itself the stacking
    is numpy's, on one thread: torch.stack of a batch runs on the intra-op threads that
    training uses, and on shared cores that made the in-process loader 15x slower
    (benchmarks/RESULTS.md). Worker processes keep default_collate (shared-memory output)."""
    if get_worker_info() is not None:
        return default_collate(items)
    return {
        key: torch.from_numpy(np.stack([item[key].numpy() for item in items])) for key in items[0]
    }


def _loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | None,
    seed: int,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed % 2**63),
    )


def build_train_loader(
    data: SegmentationData,
    indices: np.ndarray,
    augment: AugmentConfig,
    train: TrainConfig,
    seed: int,
    num_workers: int,
    pin_memory: bool,
    stats: ChannelStats | None,
    images: RunImages | None = None,
) -> DataLoader:
    """Training batches of `indices`: augmented, resized to `train.image_size`.

    An epoch has `augment.copies * len(indices)` items: each image `copies` times with
    different augmentations, or (with `train.balanced`) as many draws weighted by
    1 / category count. The same seed gives the same batches, whatever `num_workers`.

    Args:
        data: the decoded dataset.
        indices: rows of `data` to train on (a split's `train`).
        augment: augmentation ops and copies.
        train: batch size, image size, balanced sampling.
        seed: run seed; fixes the order and every augmentation draw.
        num_workers: DataLoader worker processes (0: in the calling process).
        pin_memory: passed to the DataLoader.
        stats: standardise with these channel stats (`channel_stats` of the train split), or
            None to scale to [0, 1].
        images: the run's images (input mode, stain normalisation: `train.run.run_inputs`);
            None reads `data.images` as they are, which only an rgb run without stain
            normalisation may do.

    Example:
        >>> loader = build_train_loader(data, split.train, AugmentConfig(), TrainConfig(),
        ...                             seed=0, num_workers=0, pin_memory=False, stats=None)
        >>> next(iter(loader))["image"].shape
        torch.Size([8, 3, 224, 224])
    """
    indices = np.asarray(indices, dtype=np.int64)
    size = train.image_size
    images = _checked_images(data, augment, images)
    convert = images.mode if images.mode != "rgb" and needs_rgb(augment) else None
    pixels = images.rgb(indices) if convert is not None else images.model_input(indices)
    dataset = SegmentationDataset(
        resize_images(pixels, size),
        resize_masks(data.masks[indices], size),
        data.category_ids[indices],
        indices,
        transform=build_augmentation(augment, size),
        stats=stats,
        convert=convert,
    )
    sampler = EpochSampler(dataset.category_ids, augment.copies, seed, train.balanced)
    return _loader(dataset, train.batch_size, sampler, seed, num_workers, pin_memory)


def _checked_images(
    data: SegmentationData, augment: AugmentConfig, images: RunImages | None
) -> RunImages:
    """The run's images; without them, the dataset's own, which fit only an rgb run without
    stain normalisation (anything else would silently train on the wrong inputs)."""
    if images is not None:
        return images
    if augment.input != "rgb" or augment.stain_norm != "none":
        raise ValueError(
            f"augment.input {augment.input!r} / stain_norm {augment.stain_norm!r} need the "
            "run's images: pass images=run_inputs(config, data, split).images"
        )
    return RunImages(data.images, "rgb")


def build_eval_loader(
    data: SegmentationData,
    indices: np.ndarray,
    train: TrainConfig,
    num_workers: int,
    pin_memory: bool,
    stats: ChannelStats | None,
    images: RunImages | None = None,
) -> DataLoader:
    """Evaluation batches of `indices` in order: image at `train.image_size`, mask native.

    Batch size `train.eval_batch_size`, or twice the training batch size when unset.
    `images`: the run's images, as for `build_train_loader` (None: `data.images`, rgb).
    """
    indices = np.asarray(indices, dtype=np.int64)
    images = images if images is not None else RunImages(data.images, "rgb")
    dataset = SegmentationDataset(
        resize_images(images.model_input(indices), train.image_size),
        data.masks[indices],
        data.category_ids[indices],
        indices,
        stats=stats,
    )
    batch_size = train.eval_batch_size or 2 * train.batch_size
    return _loader(dataset, batch_size, None, 0, num_workers, pin_memory)
