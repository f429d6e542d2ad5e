"""Input modes (rgb, gray, hematoxylin, eosin) and per-run stain normalisation, through the
real loaders on the real synthetic dataset."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.color import rgb2hed

from ablate.config import AugmentConfig, DataConfig, RunConfig, TrainConfig
from ablate.data.inputs import (
    STAIN_COLUMNS,
    RunImages,
    converted_images,
    quantize_stain,
    to_input,
)
from ablate.data.loader import build_eval_loader, build_train_loader, channel_stats
from ablate.data.source import load_data
from ablate.data.split import split_indices
from ablate.train.run import run_inputs

TRAIN = TrainConfig(image_size=64, batch_size=4)


@pytest.fixture(scope="module")
def data(synthetic_root):
    return load_data(DataConfig(root=str(synthetic_root)))


@pytest.fixture(scope="module")
def split(data):
    return split_indices(data.category_ids, seed=0, test_fraction=0.25, val_fraction=0.0)


@pytest.mark.parametrize("mode", ["hematoxylin", "eosin"])
def test_stain_channels_are_rgb2hed_on_the_stored_scale(mode: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    expected = quantize_stain(rgb2hed(images)[..., STAIN_COLUMNS[mode]], mode)
    got = to_input(images, mode)[..., 0]
    difference = np.abs(got.astype(int) - expected.astype(int))
    # float32 tables against rgb2hed's float64: a value on a rounding boundary may differ by 1.
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999


def test_gray_is_opencv_luma_and_shapes_follow_the_mode(data) -> None:
    images = data.images[:3]
    gray = to_input(images, "gray")
    assert gray.shape == (3, 64, 64, 1) and gray.dtype == np.uint8
    assert np.array_equal(gray[1, ..., 0], cv2.cvtColor(images[1], cv2.COLOR_RGB2GRAY))
    assert to_input(images[0], "eosin").shape == (64, 64, 1)  # one image
    assert to_input(images, "rgb") is images


def test_conversion_runs_once_per_dataset_and_mode(data) -> None:
    first = converted_images(data.images, "hematoxylin")
    assert converted_images(data.images, "hematoxylin") is first
    assert converted_images(data.images, "gray") is not first
    assert converted_images(data.images, "rgb") is data.images


def test_stain_reference_comes_from_the_training_split_only(data, split) -> None:
    images = data.images.copy()
    fitted = RunImages.fit(images, split.train, "rgb", "macenko").normalizer
    images[split.test] = 255 - images[split.test]  # only test images change
    again = RunImages.fit(images, split.train, "rgb", "macenko").normalizer
    assert np.array_equal(fitted.stains, again.stains)
    assert np.array_equal(fitted.max_concentrations, again.max_concentrations)
    images[split.train[:4]] = images[split.train[:4]] // 2  # a training image changes
    moved = RunImages.fit(images, split.train, "rgb", "macenko").normalizer
    assert not np.array_equal(fitted.max_concentrations, moved.max_concentrations)


@pytest.mark.parametrize("stain_norm", ["macenko", "reinhard"])
def test_run_inputs_normalise_then_convert(data, split, stain_norm: str) -> None:
    config = RunConfig(
        data=DataConfig(root="unused"),
        augment=AugmentConfig(input="hematoxylin", stain_norm=stain_norm, normalize=True),
    )
    inputs = run_inputs(config, data, split)
    rows = split.test[:5]
    normalized = inputs.images.rgb(rows)
    assert not np.array_equal(normalized, data.images[rows])
    assert np.array_equal(inputs.images.model_input(rows), to_input(normalized, "hematoxylin"))
    assert len(inputs.stats.mean) == 1
    train = inputs.images.normalizer(data.images[split.train])
    expected = channel_stats(to_input(train, "hematoxylin"))
    assert inputs.stats == expected


def _loader(data, split, augment: AugmentConfig, size: int = 64):
    config = RunConfig(data=DataConfig(root="unused"), augment=augment, train=TRAIN)
    inputs = run_inputs(config, data, split)
    train = TRAIN.model_copy(update={"image_size": size})
    return build_train_loader(data, split.train, augment, train, 0, 0, False, None, inputs.images)


@pytest.mark.parametrize("mode", ["gray", "hematoxylin", "eosin"])
def test_one_channel_batches_with_and_without_colour_ops(data, split, mode: str) -> None:
    geometric = _loader(data, split, AugmentConfig(input=mode, ops={"hflip": 0.5, "blur": 0.5}))
    assert geometric.dataset.convert is None  # converted once, augmented as one channel
    assert geometric.dataset.images.shape[-1] == 1
    colour = _loader(data, split, AugmentConfig(input=mode, ops={"rgb_shift": 0.5}), size=32)
    assert colour.dataset.convert == mode  # augmented in RGB, converted item by item
    assert colour.dataset.images.shape[-1] == 3
    for loader, side in ((geometric, 64), (colour, 32)):
        batch = next(iter(loader))
        assert batch["image"].shape == (4, 1, side, side)


def test_both_paths_give_the_same_inputs_when_no_colour_op_fires(data, split) -> None:
    # rgb_shift at a probability that never fires: the item-by-item path must equal the
    # converted-once path exactly (same size, so no resize sits between them).
    per_item = _loader(data, split, AugmentConfig(input="eosin", ops={"rgb_shift": 1e-12}))
    once = _loader(data, split, AugmentConfig(input="eosin", ops={}))
    assert per_item.dataset.convert == "eosin" and once.dataset.convert is None
    for position in range(5):
        first = per_item.dataset[(position, 7)]["image"]
        assert torch.equal(first, once.dataset[position]["image"])


def test_a_non_rgb_config_needs_the_runs_images(data, split) -> None:
    with pytest.raises(ValueError, match="run_inputs"):
        build_train_loader(data, split.train, AugmentConfig(input="gray"), TRAIN, 0, 0, False, None)


def test_eval_loader_reads_the_run_inputs(data, split) -> None:
    config = RunConfig(
        data=DataConfig(root="unused"), augment=AugmentConfig(input="gray", normalize=True)
    )
    inputs = run_inputs(config, data, split)
    loader = build_eval_loader(data, split.test, TRAIN, 0, False, inputs.stats, inputs.images)
    batch = next(iter(loader))
    assert batch["image"].shape[1] == 1
    # standardised with the training split's one-channel statistics
    raw = torch.from_numpy(to_input(data.images[split.test[:1]], "gray")[0]).permute(2, 0, 1)
    expected = (raw.float() / 255 - inputs.stats.mean[0]) / inputs.stats.std[0]
    assert torch.allclose(batch["image"][0], expected, atol=1e-6)
