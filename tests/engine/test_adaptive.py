"""Adaptive seeds end to end on the synthetic data: rounds, a large effect stopping at min,
the baseline pairing every seed, a worker killed mid-round, a command killed mid-round.

The grid fixes the split and the initial weights (`vary`), so the only noise is the training
stream: after 3 epochs the baseline (lr 0.01) settles on the all-foreground floor (macro Dice
about 0.62) and `lr=1e-7`, which never leaves its initial weights, about 0.59 on every seed:
a large effect (about 20 standard deviations) that the first look decides. `loss=bce` lands
anywhere between 0.49 and 0.61, so it gets further seeds. CPU runs are deterministic per
seed, so the study is the same on every machine with the same torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ablate.engine.commands import run_command
from ablate.engine.run import run_grid
from ablate.grid import load_grid
from ablate.report.load import study_rounds
from ablate.store import StudyDir

pytestmark = pytest.mark.ray

ADAPTIVE = {
    "protocol": {
        "seeds": {"min": 3, "max": 5},
        "test_fraction": 0.25,
        "val_fraction": 0.15,
        "vary": {"split": False, "init": False},
    },
    "baseline.model.widths": [4, 8],
    "baseline.train.epochs": 3,
    "baseline.train.lr": 0.01,
    "ablations": {"swap": {"lr": [1.0e-7], "loss": ["bce"]}},
}
TABLE_KEYS = {"runs": [], "class_metrics": ["category"], "history": ["epoch"]}


def _seeds_by_variant(study: Path) -> dict[str, set[int]]:
    runs = pd.read_parquet(study / "results" / "runs")
    return {v: set(group["seed"]) for v, group in runs.groupby("variant")}


def _assert_each_run_once(study: Path) -> None:
    pairs = {(v, s) for v, seeds in _seeds_by_variant(study).items() for s in seeds}
    for table, keys in TABLE_KEYS.items():
        frame = pd.read_parquet(study / "results" / table)
        assert not frame.duplicated(["variant", "seed", *keys]).any(), f"{table}: duplicates"
        assert set(zip(frame["variant"], frame["seed"], strict=True)) == pairs, table


def _assert_adaptive_study(study: Path, grid: Path) -> None:
    """The study the rounds must produce, whatever happened on the way."""
    seeds = _seeds_by_variant(study)
    assert seeds["lr=1e-7"] == {0, 1, 2}  # the large effect stops at min
    assert len(seeds["loss=bce"]) > 3  # undecided at min: more seeds
    assert seeds["baseline"] == seeds["lr=1e-7"] | seeds["loss=bce"]  # every seed paired
    runs = pd.read_parquet(study / "results" / "runs")
    assert (runs["status"] == "ok").all()
    expected_round = runs["seed"].clip(lower=2) - 2  # seeds 0..2: round 0; seed s: s - 2
    assert (runs["round"] == expected_round).all(), runs[["variant", "seed", "round"]]
    # the engine's last decision, recomputed from the store, is "done" with exactly these runs
    config = load_grid(grid)
    names = ["baseline", "lr=1e-7", "loss=bce"]
    plan = study_rounds(StudyDir.open(study), config, names)
    assert plan.done and set(plan.pairs()) == {(v, s) for v in names for s in seeds[v]}
    deltas = pd.read_csv(study / "summary" / "deltas.csv")
    row = deltas.query("variant == 'lr=1e-7' and category == 'macro' and metric == 'dice'")
    assert row["verdict"].item() == "worse" and row["decided_at"].item() == 3
    page = (study / "summary" / "report.html").read_text()
    assert page.index('id="verdicts"') < page.index('id="protocol"')
    assert '<span class="badge worse">worse</span>' in page


def test_adaptive_run_with_a_worker_killed_mid_round(
    grid_writer: Callable[..., Path],
    crash_once: Callable[[Path], Callable[..., None]],
    tmp_path: Path,
    synthetic_root: Path,
    capsys: pytest.CaptureFixture[str],
    ray_session: object,
) -> None:
    grid = grid_writer(tmp_path, synthetic_root, **ADAPTIVE)
    flag = tmp_path / "crash-once"
    flag.write_text("")
    study = tmp_path / "out"
    run_grid(str(grid), out=str(study), trainable=crash_once(flag))
    out = capsys.readouterr().out
    assert not flag.exists()  # a worker was SIGKILLed mid-seed in round 0, then retried
    assert "retrying" in out
    assert "3 variants x 3..5 seeds = 9..15 runs (adaptive seeds" in out
    assert "round 0: every variant's first 3 seeds (9 runs to run)" in out
    assert "round 1: seed 3 for baseline, loss=bce (2 runs)" in out
    assert "  lr=1e-7: worse: Holm-adjusted p" in out
    assert "  loss=bce: inconclusive:" in out and "; another seed" in out
    assert "adaptive seeds: done after round" in out
    _assert_each_run_once(study)
    _assert_adaptive_study(study, grid)
    # Running again finds the rounds done and trains nothing.
    run_command(str(grid), out=str(study))
    out = capsys.readouterr().out
    assert "round " not in out and "ray:" not in out


@pytest.mark.slow
def test_adaptive_command_killed_mid_round_resumes_with_every_run_once(
    grid_writer: Callable[..., Path], tmp_path: Path, synthetic_root: Path, ray_session: object
) -> None:
    grid = grid_writer(tmp_path, synthetic_root, **ADAPTIVE)
    study = tmp_path / "out"
    command = [sys.executable, "-m", "ablate.cli", "run", str(grid), "--out", str(study)]
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        # Tune's folder of round 1 appears when the round starts, seconds before its trials
        # (new worker processes) can store a run: kill the command right then.
        while not list((study / ".tune").glob("run-*-round1")):
            assert child.poll() is None and time.monotonic() < deadline, "round 1 never began"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
        with contextlib.suppress(ProcessLookupError):  # its Ray processes, same session
            os.killpg(child.pid, signal.SIGKILL)
    before = pd.read_parquet(study / "results" / "runs")
    round_one = {("baseline", 3), ("loss=bce", 3)}
    stored = set(zip(before["variant"], before["seed"], strict=True))
    assert len(stored) == 9 and not round_one <= stored, "not killed mid-round 1"
    run_command(str(grid), out=str(study))
    _assert_each_run_once(study)
    _assert_adaptive_study(study, grid)
    after = pd.read_parquet(study / "results" / "runs").set_index(["variant", "seed"])
    for row in before.itertuples():  # runs of round 0 were kept, not run again
        assert after.loc[(row.variant, row.seed), "finished_at"] == row.finished_at
