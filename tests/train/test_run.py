"""One run end to end on real (synthetic) PNGs: learning, determinism, failure modes, files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate.data.ebhi import SegmentationData
from ablate.data.loader import build_eval_loader
from ablate.models import build_model
from ablate.train.device import plan_device
from ablate.train.evaluate import evaluate_loss, predict_counts
from ablate.train.losses import build_loss
from ablate.train.metrics import (
    CLASS_COLUMNS,
    IMAGE_COLUMNS,
    all_foreground,
    class_metrics,
    macro,
)
from ablate.train.run import RunOutputs, execute_run, run_split, torch_threads, worker_count

from .conftest import tiny_config


def _outputs(tmp_path: Path) -> RunOutputs:
    return RunOutputs(checkpoint_dir=tmp_path / "ckpt", tensorboard_dir=tmp_path / "tb")


def test_short_training_beats_the_all_foreground_floor(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    config = tiny_config(synthetic_root, train={"epochs": 10})
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "ok", result.error
    assert list(result.class_metrics.columns) == CLASS_COLUMNS
    assert result.class_metrics["category"].tolist() == synthetic_data.categories
    floor = class_metrics(all_foreground(result.image_metrics), synthetic_data.categories)
    assert macro(result.class_metrics) > macro(floor) + 0.05
    # Metrics are counted at the native 64 px, not at the 32 px training size.
    pixels = result.image_metrics[["tp", "fp", "fn", "tn"]].sum(axis=1)
    assert set(pixels) == {64 * 64}


def test_same_seed_gives_identical_results(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    config = tiny_config(synthetic_root)
    first = execute_run(config, synthetic_data, seed=3)
    second = execute_run(config, synthetic_data, seed=3)
    assert first.status == second.status == "ok"
    pd.testing.assert_frame_equal(first.class_metrics, second.class_metrics)
    pd.testing.assert_frame_equal(first.image_metrics, second.image_metrics)
    losses = ["train_loss", "val_loss", "val_dice", "lr"]
    pd.testing.assert_frame_equal(first.history[losses], second.history[losses])
    other = execute_run(config, synthetic_data, seed=4)
    assert set(other.image_metrics["image"]) != set(first.image_metrics["image"])


def test_split_is_the_same_for_every_variant_of_a_seed(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    baseline = tiny_config(synthetic_root, train={"epochs": 1})
    variant = tiny_config(
        synthetic_root, model={"skips": False, "norm": "none"}, train={"epochs": 1, "lr": 0.003}
    )
    images = [
        set(execute_run(config, synthetic_data, seed=1).image_metrics["image"])
        for config in (baseline, variant)
    ]
    assert images[0] == images[1]
    split = run_split(baseline, synthetic_data, seed=1)
    assert images[0] == {synthetic_data.names[i] for i in split.test}


def test_diverging_run_reports_diverged_without_raising(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    config = tiny_config(
        synthetic_root,
        model={"norm": "none"},
        train={"optimizer": "sgd", "lr": 1e6, "loss": "bce", "epochs": 3},
    )
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "diverged"
    assert "non-finite" in result.error
    assert result.epochs < 3  # stopped at the first bad epoch
    assert list(result.class_metrics.columns) == CLASS_COLUMNS and result.class_metrics.empty
    assert list(result.image_metrics.columns) == IMAGE_COLUMNS and result.image_metrics.empty


def test_failing_run_reports_the_exception(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    # Five encoder levels need inputs divisible by 32: 16 px cannot work.
    config = tiny_config(
        synthetic_root, model={"widths": [4, 4, 4, 4, 4, 4]}, train={"image_size": 16}
    )
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "failed"
    assert result.error.startswith("ValueError: input size 16x16")
    assert result.class_metrics.empty and result.history.columns[0] == "epoch"


def test_early_stopping_split_is_flagged(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    on_test = tiny_config(synthetic_root, protocol={"val_fraction": 0.0}, train={"patience": 2})
    result = execute_run(on_test, synthetic_data, seed=0)
    assert result.status == "ok"
    assert result.early_stopping_split == "test"
    assert result.extras["val"] == 0
    assert result.history["val_loss"].notna().all()  # watched the test split
    on_val = tiny_config(synthetic_root, train={"patience": 2, "epochs": 1})
    assert execute_run(on_val, synthetic_data, seed=0).early_stopping_split == "val"
    no_stop = tiny_config(synthetic_root, train={"patience": None, "epochs": 1})
    assert execute_run(no_stop, synthetic_data, seed=0).early_stopping_split == "none"


def test_early_stopping_restores_the_best_epoch(
    tmp_path: Path, synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    # With this seed the validation loss improves for 5 epochs, then worsens (stop at 6).
    config = tiny_config(synthetic_root, train={"patience": 1, "epochs": 10})
    result = execute_run(config, synthetic_data, seed=0, outputs=_outputs(tmp_path))
    assert result.status == "ok"
    history = result.history
    best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert result.best_epoch == best
    if result.epochs < 10:  # stopped early: the last `patience` epochs did not improve
        assert result.epochs - best == 1
    # best.pt holds the weights of the best epoch: its validation loss is that epoch's.
    model = build_model(config.model, out_channels=1)
    model.load_state_dict(torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True))
    split = run_split(config, synthetic_data, seed=0)
    loader = build_eval_loader(synthetic_data, split.val, config.train, 0, False, None)
    loss, _ = evaluate_loss(
        model,
        loader,
        build_loss(config.train.loss, "binary"),
        "binary",
        6,
        plan_device(config.train, "cpu"),
    )
    assert loss.item() == pytest.approx(history.loc[best - 1, "val_loss"], rel=1e-5)


def test_checkpoints_and_events_are_written(
    tmp_path: Path, synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    config = tiny_config(synthetic_root)
    result = execute_run(config, synthetic_data, seed=0, outputs=_outputs(tmp_path))
    assert result.status == "ok"
    initial = torch.load(tmp_path / "ckpt" / "initial.pt", weights_only=True)
    best = torch.load(tmp_path / "ckpt" / "best.pt", weights_only=True)
    assert initial.keys() == best.keys()
    assert not torch.equal(initial["head.weight"], best["head.weight"])  # it trained
    # The initial weights depend on the seed only.
    torch.manual_seed(0)
    fresh = build_model(config.model, out_channels=1).state_dict()
    assert all(torch.equal(fresh[name], initial[name]) for name in fresh)
    # The saved best weights reproduce the reported test counts.
    model = build_model(config.model, out_channels=1)
    model.load_state_dict(best)
    split = run_split(config, synthetic_data, seed=0)
    loader = build_eval_loader(synthetic_data, split.test, config.train, 0, False, None)
    rows = predict_counts(
        model, loader, "binary", synthetic_data.categories, "cpu", names=synthetic_data.names
    )
    pd.testing.assert_frame_equal(rows, result.image_metrics)
    # ... and the reported test loss, measured in the same pass.
    loss, _ = evaluate_loss(
        model,
        loader,
        build_loss(config.train.loss, "binary"),
        "binary",
        len(synthetic_data.categories),
        plan_device(config.train, "cpu"),
    )
    assert result.test_loss == pytest.approx(loss.item(), rel=1e-5)
    assert any((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_multiclass_run_reports_one_row_per_class(
    synthetic_root: Path, synthetic_data: SegmentationData
) -> None:
    config = tiny_config(
        synthetic_root, protocol={"task": "multiclass"}, train={"loss": "0.5*dice+0.5*bce"}
    )
    result = execute_run(config, synthetic_data, seed=0)
    assert result.status == "ok", result.error
    categories = synthetic_data.categories
    assert result.class_metrics["category"].tolist() == categories
    assert len(result.image_metrics) == result.extras["test"] * len(categories)
    assert set(result.image_metrics["class_name"]) == set(categories)


def test_worker_count_policy() -> None:
    assert worker_count(None, 1) == 0
    assert worker_count(None, 2) == 0  # CPU: both cores to torch
    assert worker_count(None, 4) == 1
    assert worker_count(None, 2, cuda=True) == 1
    assert worker_count(None, 16, cuda=True) == 4
    assert worker_count(3, 1) == 3


def test_threads_and_workers_never_oversubscribe_the_trial() -> None:
    for cpus in (1, 2, 3, 4, 8):
        workers = worker_count(None, cpus)
        assert torch_threads(cpus, workers) + workers <= max(cpus, 1 + workers)
        assert torch_threads(cpus, workers) >= 1
