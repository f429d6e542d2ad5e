"""Fixtures of the training tests: the decoded synthetic dataset and tiny run configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ablate.config import RunConfig
from ablate.data.ebhi import SegmentationData, load_ebhi

# Small enough for 2 CPU cores: 32 px training, three levels of 8..32 channels, no
# augmentation except flips (cheap), batch 8.
TINY: dict[str, Any] = {
    "model": {"widths": [8, 16, 32], "norm": "batch-double"},
    "train": {
        "image_size": 32,
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.01,
        "patience": None,
        "num_workers": 0,
    },
    "augment": {"ops": {"hflip": 0.5, "vflip": 0.5}},
}


def tiny_config(root: Path, **sections: dict[str, Any]) -> RunConfig:
    """A RunConfig on the dataset at `root`: TINY with each section's keys overridden."""
    merged = {name: dict(values) for name, values in TINY.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return RunConfig.model_validate({"data": {"root": str(root)}, **merged})


@pytest.fixture(scope="session")
def synthetic_data(synthetic_root: Path) -> SegmentationData:
    """The shared synthetic dataset (6 categories x 8 pairs, 64 px), decoded once."""
    return load_ebhi(synthetic_root)
