"""A hand-built results store with known counts, written as real Parquet files.

Layout follows docs/ARCHITECTURE.md "Study directory": results/<table>/variant=<v>__seed=<s>
.parquet. Counts are simple formulas of (variant, seed, category), so the tests can compute
the expected statistics independently with numpy and scipy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import yaml

from ablate.config import DataConfig, GridConfig, Recipe, RunConfig, SyntheticConfig

STUDY = "handmade"
CATEGORIES = ["Adenocarcinoma", "Normal", "Polyp"]
SEEDS = [0, 1, 2, 3]
# no-skip loses tp to fn by a seed-dependent amount; wider gains a little, noisily; same is
# an exact copy of the baseline (zero-variance delta of 0).
VARIANTS = ["baseline", "no-skip", "wider", "same"]
WIDER_SHIFT = {0: 5, 1: -3, 2: 8, 3: 1}


def counts(variant: str, seed: int, category_index: int) -> dict[str, int]:
    """The pixel counts of one run and category."""
    tp = 800 + 10 * seed + 5 * category_index
    fp = 50 + 3 * seed
    fn = 60 + 2 * category_index + seed
    if variant == "no-skip":
        moved = 40 + 7 * seed + 11 * category_index
        tp, fn = tp - moved, fn + moved
    elif variant == "wider":
        shift = WIDER_SHIFT[seed] * (category_index + 1)
        tp, fn = tp + shift, fn - shift
    return {"tp": tp, "fp": fp, "fn": fn, "tn": 10_000}


def _write(study_dir: Path, table: str, variant: str, seed: int, frame: pd.DataFrame) -> None:
    folder = study_dir / "results" / table
    folder.mkdir(parents=True, exist_ok=True)
    frame.insert(0, "seed", seed)
    frame.insert(0, "variant", variant)
    frame.insert(0, "study", STUDY)
    frame.to_parquet(folder / f"variant={variant}__seed={seed}.parquet", index=False)


def run_config() -> RunConfig:
    """A tiny configuration (the sample-prediction test really builds and runs this model)."""
    return RunConfig(
        data=DataConfig(synthetic=SyntheticConfig(per_class=4, size=32)),
        model={"widths": [4, 8]},
        train={"image_size": 32, "batch_size": 4},
    )


def write_run(study_dir: Path, variant: str, seed: int, status: str = "ok") -> None:
    """class_metrics, history and (last) runs files of one run."""
    rows = [{"category": c, **counts(variant, seed, i)} for i, c in enumerate(CATEGORIES)]
    class_metrics = pd.DataFrame(rows)
    # Deliberately wrong derived columns: the summary must recompute from counts.
    for metric in ("dice", "iou", "precision", "recall", "accuracy", "conformity"):
        class_metrics[metric] = 0.123
    _write(study_dir, "class_metrics", variant, seed, class_metrics)
    epochs = [0, 1, 2]
    offset = 0.1 * VARIANTS.index(variant) if variant in VARIANTS else 0.0
    history = pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": [0.9 - 0.2 * e + offset for e in epochs],
            "val_loss": [0.95 - 0.1 * e + offset for e in epochs],
            "val_dice": [0.5 + 0.1 * e for e in epochs],
            "lr": [1e-3] * 3,
            "seconds": [1.0] * 3,
        }
    )
    _write(study_dir, "history", variant, seed, history)
    runs = pd.DataFrame(
        [
            {
                "status": status,
                "error": "RuntimeError: boom" if status == "failed" else None,
                "epochs": 3,
                "best_epoch": 1,
                "duration_s": 3.0,
                "test_loss": 1.0 + offset,
                "node": "node-1",
                "hostname": "host",
                "device": "cpu",
                "config": run_config().model_dump_json(),
                "early_stopping_split": "val",
            }
        ]
    )
    runs["error"] = runs["error"].astype("string")
    _write(study_dir, "runs", variant, seed, runs)


def write_study(
    study_dir: Path,
    skip: set[tuple[str, int]] = frozenset(),
    status: dict[tuple[str, int], str] | None = None,
    protocol: dict | None = None,
    analysis: dict | None = None,
) -> Path:
    """A whole study directory: grid.yaml, dataset.json and every run not in `skip`.

    `protocol` and `analysis` set keys of the stored grid's sections (the runs stay the
    same: seeds 0..3 of every variant); e.g. protocol={"vary": {"split": False}}.
    """
    study_dir.mkdir(parents=True, exist_ok=True)
    grid = GridConfig(
        study=STUDY,
        data=run_config().data,
        baseline=Recipe(),
        protocol={"seeds": SEEDS, **(protocol or {})},
        analysis=analysis or {},
    )
    (study_dir / "grid.yaml").write_text(yaml.safe_dump(grid.model_dump(mode="json")))
    dataset = {
        "root": "/data/EBHI",
        # 100 per category: 20 tested, 8 validate, 72 train on, so the split as drawn gives
        # r = 20 / 72, the fractions' 0.2 / (0.8 * 0.9) (the tests' hand-computed R)
        "counts": {c: 100 for c in CATEGORIES},
        "dropped": [{"path": "Polyp/image/<odd>.png", "reason": "no label"}],
        "categories": CATEGORIES,
    }
    (study_dir / "dataset.json").write_text(json.dumps(dataset))
    for variant in VARIANTS:
        for seed in SEEDS:
            if (variant, seed) not in skip:
                write_run(study_dir, variant, seed, (status or {}).get((variant, seed), "ok"))
    return study_dir


@pytest.fixture
def study_factory(tmp_path: Path) -> Callable[..., Path]:
    """Build a hand-made study under tmp_path: `study_factory(skip=..., status=...)`."""

    def build(name: str = "study", **kwargs: object) -> Path:
        return write_study(tmp_path / name, **kwargs)

    return build


@pytest.fixture(scope="session")
def spec() -> ModuleType:
    """This module: the known counts (`counts`, CATEGORIES, SEEDS, VARIANTS) for the tests,
    which cannot import a conftest by name under --import-mode=importlib."""
    return sys.modules[__name__]
