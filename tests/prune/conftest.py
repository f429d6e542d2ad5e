"""A tiny trained study (real training, real checkpoints, real Parquet) for the pruning tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ablate.config import (
    AugmentConfig,
    DataConfig,
    GridConfig,
    ModelConfig,
    ProtocolConfig,
    Recipe,
    RunConfig,
    TrainConfig,
)
from ablate.data.source import load_data
from ablate.grid import dump_grid
from ablate.store import ResultStore
from ablate.train.run import RunOutputs, execute_run

SEEDS = (0, 1)
VARIANT = "baseline"


def tiny_config(root: Path) -> RunConfig:
    """U-Net [4, 8, 16] at 32 px, one epoch, no augmentation: seconds on one CPU."""
    return RunConfig(
        data=DataConfig(root=str(root)),
        protocol=ProtocolConfig(seeds=list(SEEDS), test_fraction=0.25, val_fraction=0.0),
        model=ModelConfig(widths=[4, 8, 16], norm="batch"),
        train=TrainConfig(image_size=32, batch_size=8, epochs=1, patience=None, lr=0.01),
        augment=AugmentConfig(ops={}),
    )


def _write_run(store: ResultStore, config: RunConfig, seed: int, study_dir: Path) -> None:
    data = load_data(config.data)
    outputs = RunOutputs(
        checkpoint_dir=study_dir / "checkpoints" / VARIANT / f"seed={seed}",
        tensorboard_dir=study_dir / "tensorboard" / VARIANT / f"seed={seed}",
    )
    result = execute_run(config, data, seed, outputs=outputs, cpus=1)
    assert result.status == "ok", result.error
    store.write("class_metrics", VARIANT, seed, result.class_metrics)
    runs = pd.DataFrame(
        {
            "status": ["ok"],
            "error": [None],
            "epochs": [result.epochs],
            "best_epoch": [result.best_epoch],
            "duration_s": [result.duration_s],
            "node": [""],
            "device": [result.device],
            "config": [config.model_dump_json()],
        }
    )
    store.write("runs", VARIANT, seed, runs)


@pytest.fixture(scope="session")
def trained_study(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """A study directory with two trained seeds of one variant (template: copy before use)."""
    study_dir = tmp_path_factory.mktemp("prune-template") / "tiny"
    study_dir.mkdir()
    store = ResultStore(study_dir, study="tiny")
    config = tiny_config(synthetic_root)
    for seed in SEEDS:
        _write_run(store, config, seed, study_dir)
    return study_dir


def write_grid(study_dir: Path, pruning: dict) -> None:
    """The study's grid.yaml as `ablate run` stores it, with this `pruning` section."""
    config = tiny_config(Path("/unused"))
    grid = GridConfig(
        study="tiny",
        data=config.data,
        protocol=config.protocol,
        baseline=Recipe(model=config.model, train=config.train, augment=config.augment),
        pruning=pruning,
    )
    (study_dir / "grid.yaml").write_text(dump_grid(grid))


@pytest.fixture
def study_dir(trained_study: Path, tmp_path: Path) -> Path:
    """A private copy of the trained study, free to write into."""
    copy = tmp_path / "tiny"
    shutil.copytree(trained_study, copy)
    return copy


@pytest.fixture
def grid_writer() -> Callable[[Path, dict], None]:
    """`write_grid` for the tests (a conftest cannot be imported by name here)."""
    return write_grid
