"""`ablate run` end to end on a real local Ray: files, tables, resume rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ablate.engine.commands import run_command
from ablate.errors import UserError
from ablate.store import ResultStore

pytestmark = pytest.mark.ray

VARIANTS = {"baseline", "norm=none"}
TABLES = ("runs", "class_metrics", "image_metrics", "history")


def _mtimes(study: Path) -> dict[str, float]:
    return {
        str(p.relative_to(study)): p.stat().st_mtime_ns
        for p in (study / "results").rglob("*.parquet")
    }


def test_every_run_is_stored_where_the_contract_says(finished_study: tuple[Path, Path]) -> None:
    _, study = finished_study
    runs = pd.read_parquet(study / "results" / "runs")
    assert len(runs) == 2 * 2
    assert set(runs["variant"]) == VARIANTS and set(runs["seed"]) == {0, 1}
    assert (runs["status"] == "ok").all(), runs[["variant", "seed", "error"]]
    for column in (
        "study",
        "error",
        "epochs",
        "best_epoch",
        "duration_s",
        "test_loss",
        "node",
        "hostname",
        "device",
        "torch_version",
        "ray_version",
        "config",
        "started_at",
        "finished_at",
        "early_stopping_split",
    ):
        assert column in runs.columns, column
    assert runs["node"].str.len().gt(0).all()  # the Ray node id of the worker
    assert runs["test_loss"].gt(0).all()
    assert (runs["study"] == "tiny").all()
    categories = len(pd.read_json(study / "dataset.json", typ="series")["categories"])
    class_metrics = pd.read_parquet(study / "results" / "class_metrics")
    assert categories == 6 and len(class_metrics) == len(runs) * categories
    assert class_metrics["dice"].between(0, 1).all()
    for table in TABLES:
        frame = pd.read_parquet(study / "results" / table)
        assert frame.groupby(["variant", "seed"]).ngroups == 4, table
    for variant in VARIANTS:
        for seed in (0, 1):
            checkpoints = study / "checkpoints" / variant / f"seed={seed}"
            assert (checkpoints / "initial.pt").is_file() and (checkpoints / "best.pt").is_file()
            assert any((study / "tensorboard" / variant / f"seed={seed}").rglob("*"))
    pruning = pd.read_parquet(study / "results" / "pruning")  # the grid enables pruning
    assert pruning.groupby(["variant", "seed"]).ngroups == 4
    assert (study / "grid.yaml").is_file()
    assert not (study / "study.lock").exists()
    assert (study / "summary").is_dir()


def test_rerun_recomputes_nothing(
    finished_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    grid, study = finished_study
    before = _mtimes(study)
    capsys.readouterr()
    run_command(str(grid), out=str(study))
    out = capsys.readouterr().out
    assert "skipping 4 finished run(s); 0 to run" in out
    assert "ray:" not in out  # nothing to train: Tune never started
    assert _mtimes(study) == before


def test_added_seed_runs_only_the_new_pairs(
    grid_deriver: Callable[..., Path],
    finished_study: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, original = finished_study
    study = tmp_path / "out"
    shutil.copytree(original, study)
    before = _mtimes(study)
    grid = grid_deriver(finished_study[0], tmp_path, **{"protocol.seeds": [0, 1, 2]})
    capsys.readouterr()
    run_command(str(grid), out=str(study), resume=True)
    assert "skipping 4 finished run(s); 2 to run" in capsys.readouterr().out
    after = _mtimes(study)
    assert all(after[name] == stamp for name, stamp in before.items())
    runs = ResultStore(study).read("runs")
    assert sorted(zip(runs["variant"], runs["seed"], strict=True)) == sorted(
        (v, s) for v in VARIANTS for s in (0, 1, 2)
    )


def test_changed_grid_is_refused_naming_the_key(
    grid_deriver: Callable[..., Path],
    finished_study: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    _, study = finished_study
    before = _mtimes(study)
    grid = grid_deriver(finished_study[0], tmp_path, **{"baseline.train.lr": 0.5})
    with pytest.raises(UserError, match=r"baseline\.train\.lr"):
        run_command(str(grid), out=str(study))
    removed = grid_deriver(finished_study[0], tmp_path, "fewer.yaml", **{"protocol.seeds": [0]})
    with pytest.raises(UserError, match=r"protocol\.seeds"):
        run_command(str(removed), out=str(study))
    assert _mtimes(study) == before


def test_diverged_and_failed_runs_are_recorded_and_others_finish(
    grid_writer: Callable[..., Path],
    tmp_path: Path,
    synthetic_root: Path,
    ray_session: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variants = {
        "huge-lr": {"lr": 1.0e6, "norm": "none"},  # NaN loss within the first epoch
        # Five halvings of 32 px leave a 1x1 bottleneck, which instance norm refuses in
        # training: a failure only the run itself can find.
        "one-pixel": {"widths": [4, 4, 4, 4, 4, 4], "norm": "instance"},
    }
    grid = grid_writer(
        tmp_path, synthetic_root, **{"protocol.seeds": [0], "ablations": {"variants": variants}}
    )
    run_command(str(grid), out=str(tmp_path / "out"))  # returns: the study completed
    runs = ResultStore(tmp_path / "out").read("runs").set_index("variant")
    assert runs.loc["baseline", "status"] == "ok"
    assert runs.loc["huge-lr", "status"] == "diverged", runs.loc["huge-lr", "error"]
    assert runs.loc["one-pixel", "status"] == "failed"
    assert "more than 1 spatial element" in runs.loc["one-pixel", "error"]
    out = capsys.readouterr().out
    assert "failed: one-pixel seed 0: ValueError" in out and "diverged: huge-lr seed 0" in out


def test_max_concurrent_one_runs_one_trial_at_a_time(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path
) -> None:
    grid = grid_writer(tmp_path, synthetic_root)
    run_command(str(grid), out=str(tmp_path / "out"), max_concurrent=1)
    runs = pd.read_parquet(tmp_path / "out" / "results" / "runs").sort_values("started_at")
    assert len(runs) == 4 and runs["variant"].nunique() == 2
    # Each run starts after the one before it finished: never two at once.
    started = runs["started_at"].iloc[1:].to_numpy()
    finished = runs["finished_at"].iloc[:-1].to_numpy()
    assert (started >= finished).all(), runs[["variant", "seed", "started_at", "finished_at"]]


@pytest.mark.slow
def test_trials_need_no_copy_of_the_dataset_folder(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path
) -> None:
    """The driver ships the dataset through Ray's object store: once it has read the folder,
    the folder may go away and every trial still trains (workers on other machines never
    see it)."""
    folder = Path(shutil.copytree(synthetic_root, tmp_path / "dataset"))
    grid = grid_writer(tmp_path, folder, **{"protocol.seeds": [0, 1, 2]})
    study = tmp_path / "out"
    command = [sys.executable, "-m", "ablate.cli", "run", str(grid), "--out", str(study)]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as driver:
        # "study tiny: ..." is printed once the data is in the driver's memory, before Ray
        # starts and before any trial exists.
        for line in driver.stdout:
            if line.startswith("study tiny:"):
                shutil.rmtree(folder)
                break
        output = line + driver.stdout.read()
    assert driver.returncode == 0, output
    assert not folder.exists()
    runs = pd.read_parquet(study / "results" / "runs")
    assert len(runs) == 6 and (runs["status"] == "ok").all(), runs[["variant", "error"]]
