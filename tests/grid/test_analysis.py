"""The grid keys of issue 13: `analysis`, adaptive `protocol.seeds: {min, max}`, `protocol.vary`.

Bad values are answered through the real CLI like every grid problem: exit 2, one message
naming the file, the key and its line, no traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.config import MAX_SEEDS, AnalysisConfig, VaryConfig
from ablate.grid import dump_grid, load_grid, runs_count, runs_range

WriteGrid = Callable[..., Path]

# (id, text replacing "  seeds: 2\n" or appended, key with its line, words of the message)
BAD = [
    ("margin-zero", "analysis: {margin: 0}", "analysis.margin (line 11)", "greater than 0"),
    ("margin-negative", "analysis: {margin: -0.01}", "analysis.margin (line 11)", "greater than 0"),
    ("margin-text", "analysis: {margin: big}", "analysis.margin (line 11)", "must be a number"),
    ("margin-bool", "analysis: {margin: true}", "analysis.margin (line 11)", "must be a number"),
    ("margin-nan", "analysis: {margin: .nan}", "analysis.margin (line 11)", "finite"),
    ("alpha-half", "analysis: {alpha: 0.5}", "analysis.alpha (line 11)", "less than 0.5"),
    ("alpha-zero", "analysis: {alpha: 0}", "analysis.alpha (line 11)", "greater than 0"),
    ("alpha-text", "analysis: {alpha: '0.05'}", "analysis.alpha (line 11)", "must be a number"),
    ("metric", "analysis: {metric: f1}", "analysis.metric (line 11)", "'dice', 'iou'"),
    ("analysis-key", "analysis: {margn: 0.02}", "analysis.margn (line 11)", "'margin'"),
]
SEEDS = [
    ("min-one", "{min: 1, max: 5}", "protocol.seeds.min (line 5)", "at least 2"),
    ("max-below-min", "{min: 4, max: 3}", "protocol.seeds.max (line 5)", "at least seeds.min"),
    ("too-many", "{min: 3, max: 1001}", "protocol.seeds.max (line 5)", f"limit is {MAX_SEEDS}"),
    ("min-text", "{min: '3', max: 5}", "protocol.seeds.min (line 5)", "whole number"),
    ("max-missing", "{min: 3}", "protocol.seeds.max", "required, but missing"),
    (
        "futility-text",
        "{min: 3, max: 5, futility: sometimes}",
        "protocol.seeds.futility (line 5)",
        "boolean",
    ),
    ("futility-null", "{min: 3, max: 5, futility: null}", "protocol.seeds.futility", "boolean"),
    (
        "unknown-key",
        "{min: 3, max: 5, mx: 6}",
        "protocol.seeds.mx (line 5)",
        "valid keys here: min, max, futility",
    ),
]
VARY = [
    ("vary-key", "  vary: {splits: false}\n", "protocol.vary.splits (line 6)", "'split'"),
    ("vary-type", "  vary: {init: sometimes}\n", "protocol.vary.init (line 6)", "boolean"),
]


def _exit_2(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["grid", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err
    return err


@pytest.mark.parametrize(("text", "key", "says"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_analysis_exits_2_naming_key_and_line(
    write_grid: WriteGrid,
    minimal: str,
    capsys: pytest.CaptureFixture[str],
    text: str,
    key: str,
    says: str,
) -> None:
    err = _exit_2(write_grid(minimal + text + "\n"), capsys)
    assert key in err and says in err, err


@pytest.mark.parametrize(
    ("seeds", "key", "says"), [c[1:] for c in SEEDS], ids=[c[0] for c in SEEDS]
)
def test_bad_adaptive_seeds_exit_2_naming_key_and_line(
    write_grid: WriteGrid,
    minimal: str,
    capsys: pytest.CaptureFixture[str],
    seeds: str,
    key: str,
    says: str,
) -> None:
    err = _exit_2(write_grid(minimal.replace("seeds: 2", f"seeds: {seeds}")), capsys)
    assert key in err and says in err, err


@pytest.mark.parametrize(("text", "key", "says"), [c[1:] for c in VARY], ids=[c[0] for c in VARY])
def test_bad_vary_exits_2_naming_key_and_line(
    write_grid: WriteGrid,
    minimal: str,
    capsys: pytest.CaptureFixture[str],
    text: str,
    key: str,
    says: str,
) -> None:
    err = _exit_2(write_grid(minimal.replace("  seeds: 2\n", "  seeds: 2\n" + text)), capsys)
    assert key in err and says in err, err


def test_every_problem_of_the_new_keys_is_reported_at_once(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = minimal.replace("seeds: 2", "seeds: {min: 1, max: 2000}")
    err = _exit_2(write_grid(text + "analysis: {margin: 0, alpha: 0.7, metric: f1}\n"), capsys)
    for key in ("seeds.min", "seeds.max", "analysis.margin", "analysis.alpha", "analysis.metric"):
        assert key in err, err


def test_defaults_keep_todays_meaning(write_grid: WriteGrid, minimal: str) -> None:
    grid = load_grid(write_grid(minimal))
    assert grid.analysis == AnalysisConfig(metric="dice", margin=0.01, alpha=0.05)
    assert grid.protocol.vary == VaryConfig(split=True, init=True, order=True)
    assert not grid.protocol.is_adaptive
    assert grid.protocol.seed_list() == grid.protocol.min_seed_list() == [0, 1]
    assert runs_range(grid) == (2, 2) and runs_count(grid) == 2


def test_adaptive_seeds_and_the_new_sections_load_and_round_trip(
    write_grid: WriteGrid, minimal: str
) -> None:
    text = minimal.replace("seeds: 2", "seeds: {min: 3, max: 8}\n  vary: {split: false}")
    text += "analysis: {metric: iou, margin: 0.02, alpha: 0.1}\nablations: {remove: [skips]}\n"
    grid = load_grid(write_grid(text))
    protocol = grid.protocol
    assert protocol.is_adaptive and protocol.seeds.min == 3 and protocol.seeds.max == 8
    assert protocol.seeds.futility  # the default
    assert protocol.min_seed_list() == [0, 1, 2] and protocol.max_seed_list() == list(range(8))
    assert protocol.vary == VaryConfig(split=False) and protocol.first_seed == 0
    assert grid.analysis == AnalysisConfig(metric="iou", margin=0.02, alpha=0.1)
    assert runs_range(grid) == (6, 16) and runs_count(grid) == 16
    assert load_grid(write_grid(dump_grid(grid), name="dumped.yaml")) == grid
    literal = load_grid(write_grid(text.replace("max: 8}", "max: 8, futility: false}")))
    assert literal.protocol.seeds.futility is False
    assert load_grid(write_grid(dump_grid(literal), name="literal.yaml")) == literal


def test_first_seed_of_a_list_is_what_fixed_sources_keep(
    write_grid: WriteGrid, minimal: str
) -> None:
    grid = load_grid(write_grid(minimal.replace("seeds: 2", "seeds: [7, 3]")))
    assert grid.protocol.first_seed == 7


def test_grid_check_and_show_print_the_run_count_as_a_range(
    write_grid: WriteGrid, minimal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = minimal.replace("seeds: 2", "seeds: {min: 3, max: 8}") + "ablations: {remove: [skips]}\n"
    path = write_grid(text)
    assert main(["grid", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 variants x 3..8 seeds = 6..16 runs (adaptive: seeds 0..7" in out
    assert "while its macro dice is inconclusive" in out
    assert main(["grid", "show", str(path)]) == 0
    assert "study 'tiny': 2 variants x 3..8 seeds = 6..16 runs" in capsys.readouterr().out
