"""Each benchmark script's --quick mode runs to the end and prints its `name=value` line.

The scripts are run as a user runs them (`python benchmarks/<name>.py --quick`, a fresh
process), and the last line is checked: the named number, finite and positive, or for
gpu.py on a machine without CUDA the word `unmeasured`.
"""

from __future__ import annotations

import importlib.util
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
    last = run_script_lines(name, *extra, timeout=timeout)[-1]
    key, separator, value = last.partition("=")
    assert separator, f"last line is not name=value: {last!r}"
    return key, value


def run_script_lines(name: str, *extra: str, timeout: int = 300) -> list[str]:
    """The stdout lines of `benchmarks/<name>.py --quick` (exit code 0 asserted)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout.strip().splitlines()


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
    """The CUDA branch (matrix, 1 and 2 packed trial processes, projection) on the CPU."""
    key, value = run_script("gpu", "--device=cpu", "--concurrency=1,2", timeout=600)
    assert key == "gpu_images_per_s"
    assert_positive(value)


def _gpu_script(monkeypatch: pytest.MonkeyPatch):
    """benchmarks/gpu.py as a module (it imports `_common` from its own folder)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_benchmark", REPO / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_gpu_fraction_advice_packs_what_fits_and_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    advice = _gpu_script(monkeypatch).fraction_advice
    rates = {1: 300.0, 2: 520.0, 4: 560.0}
    assert advice(80.0, 6.0, rates) == {"fit": 12, "best": 4, "per_gpu": 4, "gpu": 0.25}
    assert advice(16.0, 6.0, rates)["gpu"] == 0.5  # 0.9 * 16 / 6: two fit
    assert advice(80.0, 6.0, {1: 300.0, 2: 290.0})["gpu"] == 1.0  # packing did not pay
    assert advice(80.0, 6.0, {1: 300.0, 2: 520.0, 3: 600.0})["gpu"] == 0.3333


def test_gpu_projection_counts_every_image_once_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    hours = _gpu_script(monkeypatch).run_hours
    # 1 image/s: an epoch is train + validation (80% of 2228), the test split (20%) once.
    assert hours(1, 1, 1.0, 1.0) == pytest.approx(2228 / 3600)
    assert hours(2, 3, 2.0, 4.0) == pytest.approx(
        2 * (3 * 2228 * (0.72 / 2 + 0.08 / 4) + 2228 * 0.2 / 4) / 3600
    )


@pytest.mark.slow
def test_pipeline_script() -> None:
    key, value = run_script("pipeline")
    assert key == "pipeline_ratio"
    assert_positive(value)


@pytest.mark.slow
def test_pipeline_script_input_modes() -> None:
    key, value = run_script("pipeline", "--inputs")
    assert key == "inputs_pipeline_ratio"
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


@pytest.mark.slow
@pytest.mark.ray
def test_adaptive_script_compares_both_studies() -> None:
    """Two tiny studies of 2 variants (3 fixed seeds and {min: 2, max: 3}), each an `ablate
    run`: the adaptive one runs between every variant's min and max seeds (a reduction in
    0..1 - 2/3), and no verdict is reversed."""
    lines = run_script_lines("adaptive", timeout=600)
    values = dict(line.partition("=")[::2] for line in lines[-3:])
    assert list(values) == ["most_reduction", "reversed", "run_reduction"]
    assert float(values["most_reduction"]) == pytest.approx(1 / 3, abs=1e-3)
    assert 0.0 <= float(values["run_reduction"]) <= float(values["most_reduction"])
    assert values["reversed"] == "0"
