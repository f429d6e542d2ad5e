"""Each benchmark script's --quick mode runs to the end and prints its `name=value` line.

The scripts are run as a user runs them (`python benchmarks/<name>.py --quick`, a fresh
process), and the last line is checked: the named number, finite and positive, or for
gpu.py on a machine without CUDA the word `unmeasured`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def run_script(name: str, *extra: str, timeout: int = 300) -> tuple[str, str]:
    """(name, value) of the last line of `benchmarks/<name>.py --quick`."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    key, separator, value = last.partition("=")
    assert separator, f"last line is not name=value: {last!r}"
    return key, value


def assert_positive(value: str) -> None:
    number = float(value)
    assert math.isfinite(number) and number > 0, value


def test_gpu_script_reports_or_says_unmeasured() -> None:
    key, value = run_script("gpu")
    assert key == "gpu_images_per_s"
    if torch.cuda.is_available():
        assert_positive(value)
    else:
        assert value == "unmeasured"


@pytest.mark.slow
def test_gpu_code_path_runs_on_cpu() -> None:
    """The CUDA branch (matrix, concurrent worker processes, projection) forced onto the CPU."""
    key, value = run_script(
        "gpu",
        "--device=cpu",
        "--size=32",
        "--concurrency=1",
        "--no-compile",
        "--seconds=2",
        timeout=600,
    )
    assert key == "gpu_images_per_s"
    assert_positive(value)


@pytest.mark.slow
def test_pipeline_script() -> None:
    key, value = run_script("pipeline")
    assert key == "pipeline_ratio"
    assert_positive(value)


@pytest.mark.slow
@pytest.mark.ray
def test_overhead_script() -> None:
    key, value = run_script("overhead")
    assert key == "overhead_ratio"
    assert_positive(value)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_overhead_script_prints_both_numbers() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ray_overhead.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("per_trial_overhead_s=")
    assert lines[-2].startswith("ray_start_s=")
    assert_positive(lines[-1].partition("=")[2])
    assert_positive(lines[-2].partition("=")[2])
