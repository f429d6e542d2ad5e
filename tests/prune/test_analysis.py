"""Pruning analysis of real trained runs: tables, exactness at amount 0, resume, summary."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ablate.config import PruningConfig
from ablate.prune.analysis import GRAD_NORMS, PRUNING, WEIGHT_DISTANCE
from ablate.prune.report import pruning_section
from ablate.prune.study import prune_study, run_pruning
from ablate.store import ResultStore, StudyDir

COUNTS = ["tp", "fp", "fn", "tn"]
CONFIG = PruningConfig(
    methods=["l1_unstructured", "random_unstructured", "random_structured", "global_unstructured"],
    scopes=["global", "modules"],
    amounts=[0.0, 0.5],
)


@pytest.fixture(scope="module")
def pruned(trained_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained study, analysed once for the module (tests only read it)."""
    study_dir = tmp_path_factory.mktemp("pruned") / "tiny"
    shutil.copytree(trained_study, study_dir)
    prune_study(StudyDir.open(study_dir), CONFIG)
    return study_dir


def _read(study_dir: Path, table: str) -> pd.DataFrame:
    return ResultStore(study_dir).read(table)


def test_tables_written_one_file_per_run(pruned: Path) -> None:
    for table in (PRUNING, WEIGHT_DISTANCE, GRAD_NORMS):
        files = sorted(path.name for path in (pruned / "results" / table).glob("*.parquet"))
        assert files == ["variant=baseline__seed=0.parquet", "variant=baseline__seed=1.parquet"]
    table = _read(pruned, PRUNING)
    expected = {"study", "variant", "seed", "method", "scope", "target", "amount", "category"}
    assert expected | {*COUNTS, "dice", "iou", "sparsity"} <= set(table.columns)
    assert set(table["study"]) == {"tiny"}
    # per run: unpruned + 4 methods x (1 global + 6 modules) x 2 amounts, each per category
    categories = table["category"].nunique()
    assert len(table) == 2 * categories * (1 + 4 * 7 * 2)


def test_unpruned_rows_match_the_runs_own_test_metrics(pruned: Path) -> None:
    table = _read(pruned, PRUNING)
    unpruned = table[table["method"] == "none"].sort_values(["seed", "category"])
    stored = ResultStore(pruned).read("class_metrics").sort_values(["seed", "category"])
    assert len(unpruned) == len(stored) > 0
    for column in [*COUNTS, "dice", "iou"]:
        assert unpruned[column].to_list() == stored[column].to_list(), column


def test_amount_zero_reproduces_unpruned_exactly(pruned: Path) -> None:
    table = _read(pruned, PRUNING)
    key = ["seed", "category"]
    unpruned = table[table["method"] == "none"].set_index(key)[COUNTS]
    zero = table[(table["amount"] == 0.0) & (table["method"] != "none")]
    assert len(zero) == 4 * 7 * len(unpruned)
    for _, rows in zero.groupby(["method", "target"]):
        assert rows.set_index(key)[COUNTS].sort_index().equals(unpruned.sort_index())


def test_sparsity_reached_per_target(pruned: Path) -> None:
    table = _read(pruned, PRUNING)
    half = table[
        (table["amount"] == 0.5) & table["method"].isin(["l1_unstructured", "global_unstructured"])
    ]
    # trained conv weights have no exact zeros: l1 reaches round(0.5 n) / n on every target
    assert half["sparsity"].between(0.49, 0.51).all()
    structured = table[(table["amount"] == 0.5) & (table["method"] == "random_structured")]
    assert (structured.loc[structured["target"] != "head", "sparsity"] > 0.3).all()
    # the 1-channel head rounds 0.5 of one channel to zero channels
    assert (structured.loc[structured["target"] == "head", "sparsity"] == 0).all()


def test_pruning_half_of_everything_changes_predictions(pruned: Path) -> None:
    table = _read(pruned, PRUNING)
    pruned_rows = table[(table["target"] == "global") & (table["amount"] == 0.5)]
    unpruned = table[table["method"] == "none"]
    assert not pruned_rows.groupby("method")["tp"].sum().eq(unpruned["tp"].sum()).all()


def test_weight_tables(pruned: Path) -> None:
    distance = _read(pruned, WEIGHT_DISTANCE)
    assert len(distance) == 2 * 13 and (distance["distance"] > 0).all()
    grads = _read(pruned, GRAD_NORMS)
    assert set(grads["weights"]) == {"initial", "trained"}
    assert len(grads) == 2 * 2 * 13 and (grads["grad_norm"] > 0).all()


def test_resume_skips_finished_runs(pruned: Path, tmp_path: Path) -> None:
    pruned = Path(shutil.copytree(pruned, tmp_path / "tiny"))
    files = sorted((pruned / "results").rglob("*.parquet"))
    stamps = {path: path.stat().st_mtime_ns for path in files}
    (pruned / "results" / PRUNING / "variant=baseline__seed=1.parquet").unlink()
    prune_study(StudyDir.open(pruned), CONFIG)
    for path, stamp in stamps.items():
        if path.name.endswith("seed=1.parquet") and path.parent.name == PRUNING:
            assert path.exists() and path.stat().st_mtime_ns != stamp
        else:
            assert path.stat().st_mtime_ns == stamp, path


def test_summary_and_html(pruned: Path) -> None:
    section = pruning_section(StudyDir.open(pruned))
    names = {name.removeprefix("pruning/") for name in section.files}
    assert all(name.startswith("pruning/") for name in section.files)
    assert {
        "pruning_summary.csv",
        "worst_targets.csv",
        "weight_distance.csv",
        "grad_norms.csv",
    } <= names
    assert "amount_dice_baseline.png" in names
    assert "heatmap_baseline_l1_unstructured_modules.png" in names
    assert "weight_distance_baseline.png" in names and "grad_norms_baseline.png" in names
    table = pd.read_csv(io.BytesIO(section.files["pruning/pruning_summary.csv"]))
    assert (table["seeds"] == 2).all()
    distance = pd.read_csv(io.BytesIO(section.files["pruning/weight_distance.csv"]))
    assert {"distance_mean", "relative_distance_mean", "seeds"} <= set(distance.columns)
    assert "weight_distance_relative_baseline.png" in names
    assert section.anchor == "pruning" and section.html.count("<img") >= 4
    assert "data:image/png;base64," in section.html
    assert all(png[:4] == b"\x89PNG" for n, png in section.files.items() if n.endswith(".png"))


def test_no_section_without_results(study_dir: Path) -> None:
    assert pruning_section(StudyDir.open(study_dir)) is None


def test_variants_filter(study_dir: Path) -> None:
    prune_study(StudyDir.open(study_dir), PruningConfig(variants=["other"], amounts=[0.5]))
    assert not (study_dir / "results" / PRUNING).exists()


def test_broken_run_is_reported_and_others_finish(
    study_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (study_dir / "checkpoints" / "baseline" / "seed=1" / "best.pt").unlink()
    config = PruningConfig(methods=["l1_unstructured"], scopes=["global"], amounts=[0.5])
    errors = run_pruning(StudyDir.open(study_dir), config)
    assert list(errors) == ["baseline seed 1"] and "has no best.pt" in errors["baseline seed 1"]
    assert sorted(set(_read(study_dir, PRUNING)["seed"])) == [0]
    prune_study(
        StudyDir.open(study_dir), config
    )  # the engine's entry point warns instead of raising
    assert "warning: pruning of baseline seed 1 failed" in capsys.readouterr().err
