"""Package-level smoke tests: every module imports, the CLI answers, pyproject is honest."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import ablate
from ablate.cli import main

REPO = Path(__file__).resolve().parents[1]


def _module_names() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(ablate.__path__, prefix="ablate."))


@pytest.mark.parametrize("name", _module_names())
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "summarize" in capsys.readouterr().out


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`ablate COMMAND --help`, its lines joined (argparse wraps at the terminal width)."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_train_help_gives_the_default_out_that_train_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ablate.train.commands import default_out  # the function that places the run

    default = default_out("<study>", "<variant>", "<s>")  # type: ignore[arg-type]
    assert f"(default {default.as_posix()})" in _help("train", capsys)


def test_run_help_says_running_again_continues_without_resume(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help("run", capsys)
    assert "--resume expect an existing study: print a note when there is none yet" in text
    assert "running again always continues a study, with or without --resume" in text


def test_unknown_subcommand_is_bad_input() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ablate.cli", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


def test_torch_range_admits_the_local_cpu_build() -> None:
    """The install commands pin torch==2.13.0; the declared range must admit it."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch_requirement = next(
        Requirement(dep) for dep in project["dependencies"] if dep.startswith("torch")
    )
    assert torch_requirement.specifier.contains("2.13.0")


def test_readme_starts_with_the_two_commands() -> None:
    """CI runs .ci/run; it must run the README's test command, so CI proves the README."""
    readme = (REPO / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("pip install")]
    assert commands[0].endswith("ablate run grids/quickstart.yaml")
    assert commands[1] in (REPO / ".ci" / "run").read_text()


def test_a_reader_that_stops_early_is_not_a_crash(tmp_path: Path) -> None:
    # `ablate status | head`: the reader is gone before ablate writes. That is exit 141
    # (as a shell reports a pipe's writer) with nothing on stderr and no crash log.
    child = subprocess.Popen(
        [sys.executable, "-m", "ablate.cli", "grid", "components"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ABLATE_CACHE": str(tmp_path)},
    )
    child.stdout.close()  # before the child can write: its first write finds no reader
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141, err
    assert err == ""
    assert not (tmp_path / "crash").exists()
