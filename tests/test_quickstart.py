"""The main command of the README, `ablate run grids/quickstart.yaml`, end to end.

A real subprocess on the shipped grid: 5 variants x 3 seeds on the built-in synthetic data
(generated into a private cache), every table, the summary and the terminal output checked.
About a minute on 2 cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"baseline", "no-skips", "no-norm", "loss=bce", "optimizer=sgd"}
PROGRESS = re.compile(
    r"^\[ *(\d+)/15\] (\S+) +seed (\d): ok +dice (\d\.\d{3}) \| mean \d\.\d{3} over \d/3 seeds"
)


@pytest.mark.slow
def test_quickstart_runs_the_whole_study(tmp_path: Path) -> None:
    env = {**os.environ, "ABLATE_CACHE": str(tmp_path / "cache")}
    env.pop("RAY_ADDRESS", None)
    study = tmp_path / "quickstart"
    grid = REPO / "grids" / "quickstart.yaml"
    command = [sys.executable, "-m", "ablate.cli", "run", str(grid), "--out", str(study)]
    with subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        stdout, stderr = child.communicate(timeout=900)
    assert child.returncode == 0, stdout + stderr
    # The command returns only once its local Ray instance (GCS, raylet, workers) is gone.
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)

    runs = pd.read_parquet(study / "results" / "runs")
    assert len(runs) == 15 and (runs["status"] == "ok").all()
    assert set(runs["variant"]) == VARIANTS and set(runs["seed"]) == {0, 1, 2}
    classes = pd.read_parquet(study / "results" / "class_metrics")
    assert len(classes) == 15 * 6  # runs x categories
    deltas = pd.read_csv(study / "summary" / "deltas.csv")
    assert set(deltas["variant"]) == VARIANTS - {"baseline"}
    assert (study / "summary" / "report.html").stat().st_size > 10_000

    # One progress line per run, in order, and no Ray or Tune chatter on the terminal.
    lines = stdout.splitlines()
    progress = [match for line in lines if (match := PROGRESS.match(line))]
    assert [int(match[1]) for match in progress] == list(range(1, 16)), stdout
    noise = [line for line in lines + stderr.splitlines() if _ray_noise(line)]
    assert not noise, noise
    # The baseline learns the synthetic task well above what removing normalization keeps.
    macro = classes.groupby("variant")["dice"].mean()
    assert macro["baseline"] > 0.85 and macro["baseline"] > macro["no-norm"]


def _ray_noise(line: str) -> bool:
    """Ray's and Tune's own log lines (INFO/WARNING records, worker prefixes, status tables)."""
    markers = (" INFO ", " WARNING ", "(pid=", "(raylet)", "Trial status", "== Status ==")
    return any(marker in line for marker in markers)
