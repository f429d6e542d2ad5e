"""`ablate train` through the real CLI entry point, on synthetic data and on the real sample."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from ablate.cli import main

TINY_BASELINE = {
    "model": {"widths": [8, 16, 32]},
    "train": {"image_size": 32, "epochs": 2, "batch_size": 8, "lr": 0.01, "num_workers": 0},
    "augment": {"ops": {"hflip": 0.5}},
}


def _write_grid(tmp_path: Path, root: Path, **extra: object) -> Path:
    grid = {
        "study": "cli-test",
        "data": {"root": str(root)},
        "protocol": {"seeds": 1},
        "baseline": TINY_BASELINE,
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_train_prints_the_table_and_writes_every_output(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = _write_grid(tmp_path, synthetic_root)
    out = tmp_path / "out"
    assert main(["train", str(grid), "--seed", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for word in ("Adenocarcinoma", "Serrated adenoma", "macro", "floor dice", "status: ok"):
        assert word in printed
    assert "TEST split" not in printed
    metrics = pd.read_parquet(out / "class_metrics.parquet")
    assert len(metrics) == 6 and {"dice", "iou", "tp"} <= set(metrics.columns)
    assert len(pd.read_parquet(out / "history.parquet")) == 2
    assert not pd.read_parquet(out / "image_metrics.parquet").empty
    assert (out / "initial.pt").is_file() and (out / "best.pt").is_file()
    assert any((out / "tensorboard").iterdir())


def test_train_picks_a_variant_and_flags_test_early_stopping(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = _write_grid(
        tmp_path,
        synthetic_root,
        protocol={"seeds": 1, "val_fraction": 0.0},
        ablations={"remove": ["skips"]},
    )
    code = main(
        ["train", str(grid), "--seed", "1", "--variant", "no-skips", "--out", str(tmp_path / "o")]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "no-skips" in printed and "TEST split" in printed


def test_unknown_variant_is_bad_input(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = _write_grid(tmp_path, synthetic_root)
    assert main(["train", str(grid), "--seed", "0", "--variant", "nope"]) == 2
    error = capsys.readouterr().err
    assert "nope" in error and "baseline" in error


def test_unusable_out_folder_is_bad_input_before_training(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = _write_grid(tmp_path, synthetic_root)
    taken = tmp_path / "a-file"
    taken.write_text("kept")
    assert main(["train", str(grid), "--seed", "0", "--out", str(taken)]) == 2
    error = capsys.readouterr().err
    assert f"--out {taken}: cannot create the output folder" in error
    assert "Traceback" not in error and taken.read_text() == "kept"


def test_single_run_config_trains_without_grid_keys(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CONFIG may hold just the sections of one run (data, model, train, augment)."""
    config = tmp_path / "one-run.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(synthetic_root)}, **TINY_BASELINE}))
    out = tmp_path / "out"
    assert main(["train", str(config), "--seed", "0", "--out", str(out)]) == 0
    assert "training one-run/baseline seed=0" in capsys.readouterr().out
    assert (out / "best.pt").is_file()


def test_failed_run_exits_1_after_printing_its_status(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = _write_grid(tmp_path, synthetic_root)
    grid_dict = yaml.safe_load(grid.read_text())
    # Five halvings of 32 px leave a 1x1 bottleneck, which instance norm refuses in training.
    grid_dict["baseline"]["model"].update(widths=[4, 4, 4, 4, 4, 4], norm="instance")
    grid.write_text(yaml.safe_dump(grid_dict))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(grid), "--seed", "0", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 1
    assert "status: failed (ValueError: Expected more than 1 spatial element" in (
        capsys.readouterr().out
    )


# About 5 s on 2 cores (671 PNGs decoded, two torch threads); many times longer when other
# jobs share the cores and OMP_WAIT_POLICY is not PASSIVE (OpenMP threads spin-wait).
@pytest.mark.slow
def test_train_on_the_real_sample(
    tmp_path: Path, sample_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = _write_grid(tmp_path, sample_root)
    grid_dict = yaml.safe_load(grid.read_text())
    grid_dict["baseline"]["train"].update(image_size=64, epochs=1, batch_size=16)
    grid.write_text(yaml.safe_dump(grid_dict))
    out = tmp_path / "out"
    assert main(["train", str(grid), "--seed", "0", "--out", str(out)]) == 0
    metrics = pd.read_parquet(out / "class_metrics.parquet")
    assert sorted(metrics["category"]) == sorted(
        p.name for p in sample_root.iterdir() if p.is_dir()
    )
    images = pd.read_parquet(out / "image_metrics.parquet")
    assert set(images[["tp", "fp", "fn", "tn"]].sum(axis=1)) == {224 * 224}
    # The sample's two Low-grade IN images without a label are named before training.
    printed = capsys.readouterr().out
    assert "file(s) dropped" in printed and "Low-grade IN/image/" in printed
