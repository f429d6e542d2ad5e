"""examples/plugin installed with pip into a private folder, then its grid run end to end by
`ablate run` on the synthetic data (a real subprocess with its own local Ray, whose workers
inherit PYTHONPATH and so find the plug-in through its .dist-info)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin"


def _install(target: Path) -> None:
    # --no-deps: ablate itself is the environment's. The build backend (setuptools) comes
    # from the package index pip is configured with, like ablate's own editable install.
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"]
    result = subprocess.run(
        [*command, "--target", str(target), str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "ablate_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()


def _ablate(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ablate.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.ray
def test_the_example_plugin_installs_and_its_grid_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install(site)
    env = {**os.environ, "ABLATE_CACHE": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)

    listed = _ablate(["grid", "components"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "dilated (from ablate-example-plugin)" in listed.stdout
    assert "log_cosh_dice (from ablate-example-plugin)" in listed.stdout
    assert "dilation          ablate-example-plugin" in listed.stdout

    study = tmp_path / "study"
    grid = EXAMPLE / "grid.yaml"
    ran = _ablate(["run", str(grid), "--out", str(study)], env, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    runs = pd.read_parquet(study / "results" / "runs")
    assert set(runs["variant"]) == {"baseline", "no-dilation", "loss=dice"}
    assert (runs["status"] == "ok").all(), runs[["variant", "error"]]
    assert (study / "summary" / "report.html").is_file()

    # Without the plug-in the same grid is refused, naming what is unknown.
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    refused = _ablate(["grid", "check", str(grid)], env, tmp_path)
    assert refused.returncode == 2
    assert "unknown block 'dilated'" in refused.stderr
    assert "unknown loss term 'log_cosh_dice'" in refused.stderr
