"""benchmarks/calibration.py --quick runs to the end, as a user runs it, and prints its tables
and the `corrected_fp_rate=` line (a rate: finite, in (0, 1))."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_calibration_script_quick() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "calibration.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    key, _, value = lines[-1].partition("=")
    assert key == "corrected_fp_rate"
    assert math.isfinite(float(value)) and 0 < float(value) < 1
    assert any(line.startswith("| 10 ") for line in lines)  # the 10-seed row of the FP table
    assert any("pocock-final-half 3..10" in line for line in lines)
