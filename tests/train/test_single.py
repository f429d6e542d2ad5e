"""`ablate.train_one` and `ablate train --set`: one run in-process from a RunConfig, a config
file, or a grid and variant; the command line is built on the same functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import ablate
from ablate.cli import main
from ablate.errors import DatasetError, GridError, UserError
from ablate.train.single import resolve_run

TINY = {
    "model": {"widths": [8, 16]},
    "train": {"image_size": 32, "epochs": 2, "batch_size": 8, "patience": None, "num_workers": 0},
    "augment": {"ops": {"hflip": 0.5}},
}


def _run_config_file(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "one-run.yaml"
    path.write_text(yaml.safe_dump({"data": {"root": str(root)}, **TINY}))
    return path


def test_train_one_from_a_run_config_object(synthetic_root: Path) -> None:
    config = ablate.RunConfig.model_validate({"data": {"root": str(synthetic_root)}, **TINY})
    result = ablate.train_one(config, seed=0, overrides=["train.epochs=1"])
    assert isinstance(result, ablate.RunResult)
    assert result.status == "ok" and result.epochs == 1 and len(result.history) == 1
    assert len(result.class_metrics) == 6 and result.class_metrics["dice"].between(0, 1).all()


def test_train_one_from_a_grid_variant_writes_the_cli_files(
    tmp_path: Path, synthetic_root: Path
) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "study": "single",
                "data": {"root": str(synthetic_root)},
                "baseline": TINY,
                "ablations": {"remove": ["norm"]},
            }
        )
    )
    out = tmp_path / "out"
    result = ablate.train_one(
        grid, 1, variant="no-norm", overrides=["baseline.train.epochs=1"], out=out
    )
    assert result.status == "ok" and result.epochs == 1
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["model"]["norm"] == "none" and record["config"]["train"]["epochs"] == 1
    assert (out / "best.pt").is_file() and (out / "class_metrics.parquet").is_file()
    with pytest.raises(UserError, match=r"no variant 'no-skips'; variants: baseline, no-norm"):
        resolve_run(grid, "no-skips")


def test_train_one_errors_are_typed(tmp_path: Path, synthetic_root: Path) -> None:
    path = _run_config_file(tmp_path, synthetic_root)
    with pytest.raises(GridError, match=r"train\.epoch \(--set train\.epoch=1\)"):
        ablate.train_one(path, 0, overrides=["train.epoch=1"])
    with pytest.raises(DatasetError, match=r"one-run\.yaml: data\.root"):
        ablate.train_one(path, 0, overrides=[f"data.root={tmp_path / 'nowhere'}"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an `ablate train` run folder"):
        ablate.train_one(path, 0, out=tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_train_command_takes_overrides_for_a_run_config(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _run_config_file(tmp_path, synthetic_root)
    out = tmp_path / "out"
    code = main(["train", str(path), "--seed", "0", "--out", str(out), "--set", "train.epochs=1"])
    assert code == 0, capsys.readouterr().err
    assert "status: ok | epochs: 1" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["config"]["train"]["epochs"] == 1
