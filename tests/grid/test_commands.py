"""`ablate grid check|show|components` through the real CLI entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.cli import main

GRIDS = Path(__file__).resolve().parents[2] / "grids"
WriteGrid = Callable[..., Path]


def test_check_prints_variants_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grid", "check", str(GRIDS / "quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "study 'quickstart', 5 variants x 3 seeds = 15 runs" in out
    assert "baseline, no-skips, no-norm, loss=bce, optimizer=sgd" in out


def test_check_reports_every_failing_file(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_grid(minimal, name="good.yaml")
    unknown = write_grid(minimal + "    lrr: 1\n", name="unknown.yaml")
    syntax = write_grid(minimal + "  train: [\n", name="syntax.yaml")
    code = main(["grid", "check", str(unknown), str(good), str(syntax)])
    captured = capsys.readouterr()
    assert code == 2
    assert "good.yaml: study 'tiny', 1 variant x 2 seeds = 2 runs" in captured.out
    assert "unknown.yaml: 1 problem(s)" in captured.err
    assert "baseline.train.lrr (line 11)" in captured.err
    assert "syntax.yaml: 1 problem(s)" in captured.err and "YAML syntax error" in captured.err
    assert "Traceback" not in captured.err


def test_show_prints_an_aligned_table(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_grid(
        minimal + "ablations:\n  remove: [norm, augmentation]\n  swap:\n    lr: [1.0e-4]\n"
    )
    assert main(["grid", "show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "study 'tiny': 4 variants x 2 seeds = 8 runs"
    table = dict(line.split(None, 1) for line in lines[1:])
    assert table["variant"] == "changes vs baseline"
    assert table["baseline"] == "-"
    assert table["no-norm"] == "model.norm: batch-double -> none"
    assert table["no-augmentation"].startswith("augment.ops: -rotate, -hflip")
    assert table["lr=0.0001"] == "train.lr: 0.001 -> 0.0001"
    columns = {line.index(table[line.split()[0]]) for line in lines[1:]}
    assert len(columns) == 1  # the changes column starts at the same offset on every row


def test_show_writes_an_empty_list_as_brackets(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No skip is disabled in the baseline: `[]`, not nothing before the arrow."""
    grid = write_grid(minimal + "ablations:\n  remove: [skip-2]\n")
    assert main(["grid", "show", str(grid)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split() == ["no-skip-2", "model.disabled_skips:", "[]", "->", "2"]


def test_show_of_a_bad_grid_exits_2(
    write_grid: WriteGrid, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grid", "show", str(write_grid(""))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "empty" in err and "Traceback" not in err


def test_components_lists_removals_and_swappable_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grid", "components"]) == 0
    out = capsys.readouterr().out
    for name in ("skip-K", "skips", "norm", "deepest-level", "aug-rotate", "early-stopping"):
        assert f"\n  {name} " in out
    assert "norm (model.norm)" in out and "instance-double" in out
    assert "lr (train.lr)" in out and "number > 0.0" in out


def test_check_and_show_flag_early_stopping_on_the_test_split(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    on_test = minimal.replace("  seeds: 2\n", "  seeds: 2\n  val_fraction: 0\n")
    grid = write_grid(on_test + "ablations:\n  remove: [early-stopping]\n")
    assert main(["grid", "check", str(grid)]) == 0
    assert main(["grid", "show", str(grid)]) == 0
    out = capsys.readouterr().out
    # The early-stopping removal trains every epoch: only the baseline watches the test split.
    assert out.count("early stopping of baseline watches the TEST split") == 2
    assert main(["grid", "check", str(write_grid(minimal, name="val.yaml"))]) == 0
    assert "TEST split" not in capsys.readouterr().out
