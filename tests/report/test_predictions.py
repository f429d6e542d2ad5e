"""Sample predictions rebuilt from real checkpoints on a real (synthetic) dataset.

The checkpoints are freshly initialised tiny U-Nets saved as best.pt: the figure only needs
weights that load, not trained ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ablate.report.commands import summarize_command
from ablate.report.design import delta_table
from ablate.report.load import load_study
from ablate.report.predictions import collect_samples, pick_variants
from ablate.report.stats import run_scores
from ablate.store import StudyDir
from ablate.store.study import CHECKPOINTS


@pytest.fixture
def study_with_checkpoints(study_factory, spec, tmp_path: Path, monkeypatch) -> Path:
    pytest.importorskip("ablate.data.loader", reason="data loaders not built yet")
    pytest.importorskip("ablate.data.source", reason="data source not built yet")
    import torch

    from ablate.models import build_model

    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    study_dir = study_factory()
    torch.manual_seed(0)
    for variant in ("baseline", "no-skip", "wider"):
        folder = StudyDir.open(study_dir).run_folder(CHECKPOINTS, variant, 0)
        path = study_dir.joinpath(*folder, "best.pt")
        path.parent.mkdir(parents=True)
        torch.save(build_model(spec.run_config().model, 1).state_dict(), path)
    return study_dir


def test_pick_variants_most_harmful_and_most_helpful(study_factory) -> None:
    study = load_study(StudyDir.open(study_factory()))
    deltas = delta_table(run_scores(study.class_metrics), study.design())
    assert pick_variants(deltas, "dice") == ["no-skip", "wider"]


def test_collect_samples_predicts_test_images(study_with_checkpoints: Path) -> None:
    study = load_study(StudyDir.open(study_with_checkpoints))
    samples = collect_samples(study, ["no-skip", "wider"], per_category=2)
    assert samples.seed == 0
    assert set(samples.predictions) == {"baseline", "no-skip", "wider"}
    assert len(set(samples.categories)) == 6  # every synthetic category has a test image
    for masks in samples.predictions.values():
        assert masks.shape == samples.truths.shape and masks.dtype == np.bool_


def test_summary_embeds_sample_predictions(study_with_checkpoints: Path) -> None:
    summarize_command(str(study_with_checkpoints))
    summary = study_with_checkpoints / "summary"
    assert (summary / "sample_predictions.png").read_bytes()[:4] == b"\x89PNG"
    page = (summary / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "sample predictions: seed 0" in page
