"""Runs trained on other inputs (a stain channel, stain normalisation) analysed later: the
restored model must get exactly the inputs it was trained and evaluated on.

Real training (tiny, one epoch), real checkpoints and Parquet; the sample predictions and the
pruning table's unpruned rows are compared with the counts the run itself stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ablate.config import AugmentConfig, PruningConfig
from ablate.data.loader import build_eval_loader
from ablate.data.source import load_data
from ablate.prune.analysis import GRAD_NORMS, PRUNING
from ablate.prune.study import prune_study
from ablate.report.load import load_study
from ablate.report.predictions import collect_samples
from ablate.store import ResultStore, StudyDir
from ablate.train.device import plan_device
from ablate.train.restore import restore_model
from ablate.train.run import RunOutputs, execute_run, run_inputs, run_split
from ablate.train.tensorboard import overlays

from .conftest import tiny_config

VARIANTS = {
    "baseline": AugmentConfig(ops={"hflip": 0.5}, input="hematoxylin", stain_norm="macenko"),
    "gray-reinhard": AugmentConfig(
        ops={"rgb_shift": 0.5}, input="gray", stain_norm="reinhard", normalize=True
    ),
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    study_dir = tmp_path_factory.mktemp("inputs") / "inputs"
    store = ResultStore(study_dir, study="inputs")
    for variant, augment in VARIANTS.items():
        config = tiny_config(synthetic_root).model_copy(update={"augment": augment})
        outputs = RunOutputs(
            checkpoint_dir=study_dir / "checkpoints" / variant / "seed=0",
            tensorboard_dir=study_dir / "tensorboard" / variant / "seed=0",
        )
        result = execute_run(config, load_data(config.data), 0, outputs=outputs, cpus=1)
        assert result.status == "ok", result.error
        store.write("image_metrics", variant, 0, result.image_metrics)
        store.write("class_metrics", variant, 0, result.class_metrics)
        runs = {"status": ["ok"], "error": [None], "epochs": [1], "best_epoch": [1]}
        runs |= {"duration_s": [1.0], "node": [""], "device": ["cpu"]}
        store.write("runs", variant, 0, pd.DataFrame(runs | {"config": [config.model_dump_json()]}))
    return study_dir


def test_sample_predictions_match_the_runs_stored_counts(study: Path) -> None:
    results = load_study(StudyDir.open(study))
    samples = collect_samples(results, ["gray-reinhard"], per_category=1)
    stored = ResultStore(study).read("image_metrics").set_index(["variant", "image"])
    data = load_data(results.run_config("baseline", 0).data)
    for variant, masks in samples.predictions.items():
        for row, index in enumerate(samples.indices):
            truth = samples.truths[row].astype(bool)
            tp = int((masks[row] & truth).sum())
            fp = int((masks[row] & ~truth).sum())
            counts = stored.loc[(variant, data.names[index])]
            assert (tp, fp) == (counts["tp"], counts["fp"]), (variant, data.names[index])


def test_pruning_sees_the_inputs_the_run_was_evaluated_on(study: Path) -> None:
    prune_study(
        StudyDir.open(study),
        PruningConfig(methods=["l1_unstructured"], scopes=["global"], amounts=[0.0]),
    )
    table = ResultStore(study).read(PRUNING)
    unpruned = table[table["method"] == "none"].sort_values(["variant", "category"])
    stored = ResultStore(study).read("class_metrics").sort_values(["variant", "category"])
    for column in ("tp", "fp", "fn", "tn"):
        assert unpruned[column].to_list() == stored[column].to_list(), column
    norms = ResultStore(study).read(GRAD_NORMS)
    assert set(norms["variant"]) == set(VARIANTS)
    assert np.isfinite(norms["grad_norm"]).all() and (norms["grad_norm"] > 0).any()


def test_one_channel_overlays_render_in_colour(study: Path, synthetic_root: Path) -> None:
    config = tiny_config(synthetic_root).model_copy(update={"augment": VARIANTS["baseline"]})
    data = load_data(config.data)
    split = run_split(config, data, 0)
    inputs = run_inputs(config, data, split)
    model = restore_model(StudyDir.open(study), config, "baseline", 0, data.categories)
    assert model.encoder[0].conv1.in_channels == 1
    loader = build_eval_loader(data, split.test, config.train, 0, False, None, inputs.images)
    panels = overlays(model, loader, "binary", plan_device(config.train, "cpu"), count=2)
    assert panels.shape == (2, 3, 64, 128) and torch.isfinite(panels).all()
    # shown at the native 64 px; the left half is the image in gray: its three channels are equal
    assert torch.equal(panels[:, 0, :, :64], panels[:, 1, :, :64])
