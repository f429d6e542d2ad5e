"""protocol.vary: each source of randomness (split, initial weights, training stream) follows
the seed only when it varies; a fixed one is the study's first seed's, for every seed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ablate.data.ebhi import SegmentationData
from ablate.train.run import RunOutputs, RunResult, RunSeeds, execute_run, run_seeds, run_split

from .conftest import tiny_config

LOSSES = ["train_loss", "val_loss", "val_dice"]


def _config(root: Path, seeds: object = 3, **vary: bool):
    # dropout on: its masks belong to the training stream, so they must follow `order` too
    return tiny_config(
        root,
        protocol={"seeds": seeds, "vary": vary},
        model={"dropout": 0.3},
        train={"epochs": 1},
    )


def _run(config, data: SegmentationData, seed: int, folder: Path) -> tuple[RunResult, dict]:
    outputs = RunOutputs(
        checkpoint_dir=folder / f"ckpt{seed}", tensorboard_dir=folder / f"tb{seed}"
    )
    result = execute_run(config, data, seed, outputs=outputs)
    assert result.status == "ok", result.error
    initial = torch.load(outputs.checkpoint_dir / "initial.pt", weights_only=True)
    return result, initial


def _same_weights(first: dict, second: dict) -> bool:
    return all(torch.equal(first[name], second[name]) for name in first)


def test_run_seeds_follow_the_seed_only_where_it_varies(synthetic_root: Path) -> None:
    assert run_seeds(_config(synthetic_root), 5) == RunSeeds(split=5, init=5, order=5)
    fixed_split = _config(synthetic_root, split=False)
    assert run_seeds(fixed_split, 5) == RunSeeds(split=0, init=5, order=5)
    # the first seed of the study's list, not seed 0
    listed = _config(synthetic_root, seeds=[7, 3, 9], init=False, order=False)
    assert run_seeds(listed, 9) == RunSeeds(split=9, init=7, order=7)
    adaptive = _config(synthetic_root, seeds={"min": 3, "max": 6}, split=False)
    assert run_seeds(adaptive, 4).split == 0


def test_split_false_keeps_one_split_for_every_seed(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    fixed, varying = _config(synthetic_root, split=False), _config(synthetic_root)
    splits = [run_split(fixed, synthetic_data, seed) for seed in (0, 1, 2)]
    for split in splits[1:]:
        for part in ("train", "val", "test"):
            assert (getattr(split, part) == getattr(splits[0], part)).all()
    assert (splits[0].test == run_split(varying, synthetic_data, 0).test).all()  # seed 0's
    assert set(run_split(varying, synthetic_data, 1).test) != set(splits[0].test)


def test_init_false_keeps_the_initial_weights_init_true_draws_new_ones(
    synthetic_root: Path, synthetic_data: SegmentationData, tmp_path: Path
) -> None:
    fixed = _config(synthetic_root, init=False)
    _, first = _run(fixed, synthetic_data, 0, tmp_path / "fixed")
    _, second = _run(fixed, synthetic_data, 1, tmp_path / "fixed")
    assert _same_weights(first, second)
    varying = _config(synthetic_root, split=False)
    _, third = _run(varying, synthetic_data, 1, tmp_path / "varying")
    assert _same_weights(first, _run(varying, synthetic_data, 0, tmp_path / "varying")[1])
    assert not _same_weights(first, third)


def test_order_is_the_only_difference_left_when_split_and_init_are_fixed(
    synthetic_root: Path, synthetic_data: SegmentationData, tmp_path: Path
) -> None:
    nothing = _config(synthetic_root, split=False, init=False, order=False)
    a, _ = _run(nothing, synthetic_data, 1, tmp_path / "nothing")
    b, _ = _run(nothing, synthetic_data, 2, tmp_path / "nothing")
    # nothing varies: seeds 1 and 2 are the same run, bit for bit (CPU runs are deterministic)
    pd.testing.assert_frame_equal(a.history[LOSSES], b.history[LOSSES])
    pd.testing.assert_frame_equal(a.image_metrics, b.image_metrics)
    order = _config(synthetic_root, split=False, init=False)
    c, initial_c = _run(order, synthetic_data, 1, tmp_path / "order")
    d, initial_d = _run(order, synthetic_data, 2, tmp_path / "order")
    assert _same_weights(initial_c, initial_d)
    assert set(c.image_metrics["image"]) == set(d.image_metrics["image"])
    # the data order, augmentation draws and dropout masks differ, so training does
    assert not c.history[LOSSES].equals(d.history[LOSSES])
