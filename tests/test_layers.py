"""The package's import ladder, checked with import-linter (contracts in pyproject.toml).

config -> store -> grid, data, models -> train -> report -> prune -> engine -> cli: a floor
imports only floors below it, `commands.py` modules are reached from ablate.cli alone, and
no package has an import cycle between its modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter", reason="import-linter is a dev dependency")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the pyproject.toml in `cwd`, without a cache (its folder is the repo's)."""
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command"
        "; sys.exit(lint_imports_command())",
        "--no-cache",
    ]
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_the_import_ladder_holds() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_back_edge_breaks_the_ladder(tmp_path: Path) -> None:
    # The contracts must be able to fail: a copy of the package where the report imports
    # pruning (the cycle this ladder removed) is refused.
    shutil.copytree(REPO / "ablate", tmp_path / "ablate")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "ablate" / "report" / "page.py").open("a") as page:
        page.write(textwrap.dedent("\nfrom ablate.prune.report import pruning_section  # noqa\n"))
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "ablate.report.page" in result.stdout and "ablate.prune" in result.stdout
